using System.Diagnostics;
using System.Globalization;
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Train.Progress;
using MiniGpt.Train.Runs;
using MiniGpt.Training;

namespace MiniGpt.Train;

public static class TrainVerb
{
    private static readonly TrainOptions D = new();

    private static readonly Option<string> Data = Option.Text("data",
        "'induction' (generated task), a UTF-8 text file (tokenized with --tokenizer), a folder written by prepare, or a .bin of uint16 tokens", D.Data);
    private static readonly Option<string?> Val = Option.OptionalText("val", "separate validation file (otherwise the last 10 % of --data)", "none: the last 10 % of --data");
    private static readonly Option<string> Tokenizer = SharedOptions.Tokenizer.WithHelpLine(
        "for text data: char, bpe:N (byte-level BPE of N tokens learned from the text), cl100k_base or o200k_base (GPT-4/4o, compacted to the corpus's tokens), gpt2 (GPT-2's own 50,257 ids, not compacted)");
    private static readonly Option<string?> Name = Option.OptionalText("name", "run folder runs/NAME/: config.json, metrics.jsonl, model.safetensors, loss.png",
        "date-time and data, e.g. 20261125-143512-induction").Shown("NAME");
    private static readonly Option<string> RunsDir = Option.Text("runs-dir", "folder that holds the run folders", RunFolder.Root);
    private static readonly Option<string?> Out = Option.OptionalText("out",
        "write only a checkpoint at this path instead of a run folder; training state goes beside it as *.train.safetensors", "none: runs/NAME/model.safetensors");
    private static readonly Option<string?> Resume = Option.OptionalText("resume",
        "continue a run exactly where it stopped: a run folder (runs/NAME) or a checkpoint path (other options come from it)", "none");
    private static readonly Option<string?> InitFrom = Option.OptionalText("init-from",
        "fine-tune: start from this checkpoint's weights (MiniGpt .safetensors, Hugging Face GPT-2 folder, llm.c .bin) with a fresh optimizer, step 0 and its tokenizer; " +
        "the model options must agree with it or be left out (--n-ctx may be shorter: W_pos is cropped); ties W_U = W_Eᵀ when its are (--tie-embeddings=false unties)",
        "none: random init").ParsedBy((_, v) => CheckpointPath.Resolve(v));
    private static readonly Option<bool> TrackCircuits = Option.Flag("track-circuits",
        "score every head (previous-token, induction, …) at each evaluation: shown on the progress line, logged to <checkpoint stem>.circuits.jsonl; a run folder also gets the circuits report at the end");
    private static readonly Option<bool> Overwrite = Option.Flag("overwrite", "replace an existing run folder or checkpoint (otherwise train refuses, so no run is lost)");
    private static readonly Option<bool> TieEmbeddings = Option.Flag("tie-embeddings", "tie W_U to W_Eᵀ as nanoGPT does: one tensor with the summed gradient, no b_U (written to the checkpoint as an explicit W_U); with --init-from, on when the checkpoint's are tied");
    private static readonly Option<string> Optimizer = Option.Text("optimizer", "adamw or sgd", D.Optimizer).Choices("adamw", "sgd");
    private static readonly Option<int> Steps = Option.Int("steps", "optimizer steps", D.Steps);
    // 0 and -1 are TrainOptions' "unset" for lr and min_lr: a given lr must be a real one
    private static readonly Option<float> Lr = Option.Float("lr", "peak learning rate", D.Lr, shown: "3e-3 for induction, 1e-3 for files").Check(lr => lr > 0, "must be > 0");
    private static readonly Option<float> MinLr = Option.Float("min-lr", "learning rate at the end of the cosine decay", D.MinLr, shown: "lr / 10");
    private static readonly Option<int> WarmupSteps = Option.Int("warmup-steps", "linear warm-up steps", D.WarmupSteps);
    private static readonly Option<float> WeightDecay = Option.Float("weight-decay", "AdamW decoupled decay of the weight matrices", D.WeightDecay);
    private static readonly Option<float> Beta1 = Option.Float("beta1", "Adam β1", D.Beta1);
    private static readonly Option<float> Beta2 = Option.Float("beta2", "Adam β2", D.Beta2);
    private static readonly Option<float> GradClip = Option.Float("grad-clip", "clip the global gradient norm to this (0 = off)", D.GradClip);
    private static readonly Option<int> EvalInterval = Option.Int("eval-interval", "steps between validation losses", D.EvalInterval);
    private static readonly Option<int> EvalBatches = Option.Int("eval-batches", "validation batches per evaluation (at most 8 for the induction task)", D.EvalBatches);
    private static readonly Option<int> LogInterval = Option.Int("log-interval", "steps between progress lines", D.LogInterval);
    private static readonly Option<int> CheckpointInterval = Option.Int("checkpoint-interval", "steps between checkpoints (one is always written at the end)", D.CheckpointInterval);
    private static readonly Option<ulong> Seed = Option.ULong("seed", "seed for init and data order", D.Seed);

    public static Options Declare() =>
        new Options("train", "train: trains a GPT and writes checkpoints (safetensors, loadable by TransformerLens).",
                Data, Val, Tokenizer, Name, RunsDir, Out, Resume, InitFrom, TrackCircuits, Overwrite)
            .Add(ModelOptions.All)
            .Add(TieEmbeddings, Optimizer, SharedOptions.BatchSize, Steps, Lr, MinLr, WarmupSteps, WeightDecay, Beta1, Beta2, GradClip,
                EvalInterval, EvalBatches, LogInterval, CheckpointInterval, Seed, SharedOptions.Threads);


    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        bool overwrite = o.Get(Overwrite);
        Trainer trainer;
        RunFolder? run = null;
        if (o.Has(InitFrom) && o.Has(Resume))
            throw new UsageError("--init-from starts a new run from a checkpoint's weights and --resume continues a run (whose source its folder records): give one of them");
        if (o.Get(Resume) is { } resume)
        {
            // a resumed run is the same run: its settings come from the checkpoint, so other options would be ignored
            Option[] allowed = [Resume, Out, SharedOptions.Threads, Overwrite, TrackCircuits];
            if (o.GivenNames.FirstOrDefault(n => !allowed.Any(a => a.Name == n)) is { } extra)
                throw new UsageError($"--{extra} cannot be changed when resuming (the run continues with its saved settings): drop it, or start a new run");
            if (Directory.Exists(resume))
            {
                if (o.Has(Out)) throw new UsageError($"--out cannot be combined with --resume of a run folder: the run continues in '{resume}'");
                string ckpt = RunFolder.CheckpointIn(resume);
                trainer = Trainer.Resume(ckpt, saved => saved with { Out = ckpt });
                run = RunFolder.Reopen(resume, trainer.Optimizer.Step);
                // a state from before the training time was saved in it: the run's clock goes on from its metrics
                if (trainer.ElapsedBefore == TimeSpan.Zero) trainer.ElapsedBefore = run.ElapsedAtReopen;
            }
            else
            {
                string outPath = o.Get(Out) ?? resume;
                if (outPath != resume) CheckOut(outPath, overwrite);
                trainer = Trainer.Resume(resume, saved => saved with { Out = outPath });
            }
            stdout.WriteLine($"resuming {resume} at step {trainer.Optimizer.Step} of {trainer.Options.Steps}");
        }
        else
        {
            var opts = FromOptions(o);
            Checkpoint.Loaded? source = null;
            if (o.Get(InitFrom) is { } from)
            {
                source = Checkpoint.Load(from); // a missing or unreadable F is the loaders' one-line error
                opts = FineTuneOptions(o, opts, from, source);
            }
            if (o.Has(Out))
            {
                if (o.Has(Name) || o.Has(RunsDir)) throw new UsageError("--name/--runs-dir and --out cannot be combined: --name writes a run folder runs/NAME/, --out a single checkpoint");
                CheckOut(opts.Out, overwrite);
            }
            else
            {
                run = RunFolder.Plan(o.Get(Name), opts.Data, overwrite, o.Get(RunsDir));
                opts = opts with { Out = run.Checkpoint };
            }
            // StartFrom gets the only reference to the source, so a cropped copy lets it go before the optimizer's arrays
            trainer = source != null ? Trainer.StartFrom(opts, Interlocked.Exchange(ref source, null)) : Trainer.Start(opts);
            run?.Begin(trainer);
        }

        var t = trainer.Options;
        var c = trainer.Model.Config;
        stdout.WriteLine(ConsoleLine.Wrap($"data: {trainer.Data.Describe()}", 6));
        stdout.WriteLine(ConsoleLine.Wrap($"model: {c.NLayers} layers, d_model {c.DModel}, {c.NHeads} heads × {c.DHead}, " +
            $"{(c.AttnOnly ? "attention-only" : $"d_mlp {c.DMlp}")}, n_ctx {c.NCtx}, d_vocab {c.DVocab}, " +
            $"{(c.HasLayerNorm ? "LayerNorm" : "no LayerNorm")}, {c.PositionalEmbeddingType} positions, {trainer.Model.ParameterCount:N0} parameters", 7));
        stdout.WriteLine(ConsoleLine.Wrap($"training: {t.Optimizer} lr {t.Lr:G3}→{t.MinLr:G3} (warm-up {t.WarmupSteps}), batch {t.BatchSize}, {t.Steps} steps, " +
            $"seed {t.Seed}, {Tensors.WorkerPool.Shared.Threads} threads → {t.Out}", 10));
        if (t.InitSource is { } src)
            stdout.WriteLine($"init from: {src.Describe()}: weights, shape and tokenizer ({trainer.Tokenizer?.Name ?? "none: token ids"}); " +
                $"optimizer, step, schedule and data order fresh; " +
                (t.TieEmbeddings ? "tied embeddings: W_U = W_Eᵀ trains as one tensor, as in the checkpoint (--tie-embeddings=false unties)"
                    : Trainer.HasTiedEmbeddings(trainer.Model) ? "untied (--tie-embeddings=false): W_E and W_U train apart from now on" : "untied embeddings, as in the checkpoint"));
        if (run != null) stdout.WriteLine($"run folder: {run.Dir}{Path.DirectorySeparatorChar} (config.json, metrics.jsonl, loss.png)");

        // resuming appends to the run's log, a new run starts it afresh
        var tracker = o.Get(TrackCircuits) ? new CircuitTracker(trainer.Model, t.Out, append: o.Has(Resume)) : null;
        if (tracker != null) stdout.WriteLine($"tracking circuits at every evaluation → {tracker.LogPath}");

        // Ctrl-C, kill (SIGTERM) and a closed terminal (SIGHUP) all stop the run at the next step boundary, checkpoint written
        // (caught only while training: after it, a signal ends the process as usual)
        bool stopped;
        string signal;
        int exitCode;
        using (var stop = new StopSignals())
        {
            ProgressView.Run(stdout, "train", sink =>
            {
                var live = new LiveStatus(trainer);
                trainer.Run(log =>
                    {
                        // --track-circuits: the top head of each role on a line of its own under the evaluation
                        sink.Line(Format(log, t.Steps) + (tracker != null && log.ValLoss != null
                            ? "\n" + ConsoleLine.Under(ConsoleLine.StepField(log.Step, t.Steps), tracker.Record(log).Split(" | ", StringSplitOptions.RemoveEmptyEntries))
                            : ""));
                        run?.Record(log);
                        live.Logged(log);
                    },
                    () => stop.Requested,
                    (step, loss) =>
                    {
                        live.Stepped(step, loss);
                        if (sink.WantsStatus) sink.Report(step, t.Steps, live.Status(step));
                    });
                return 0;
            });
            (stopped, signal, exitCode) = (stop.Requested, stop.Name, stop.ExitCode);
        }
        run?.DrawPlot(wait: true);
        if (stopped)
        {
            string again = run?.Dir ?? t.Out;
            // after SIGHUP the terminal may be gone: the checkpoint is written, the line is only a courtesy
            try { stdout.WriteLine($"interrupted by {signal} at step {trainer.Optimizer.Step}: checkpoint written to {t.Out}; continue with --resume {again}"); }
            catch (IOException) { }
            return exitCode;
        }
        if (run != null && tracker != null) CircuitsOfRun(trainer, run, stdout);
        stdout.WriteLine($"done: {t.Out}");
        return 0;
    }

    /// <summary>
    /// The circuits report of a tracked run's final model, in the run folder's circuits/: the analysis the
    /// circuits verb runs, on the first batches of the run's own validation windows (the held-out split of
    /// its data; for the induction task the windows circuits reads by default).
    /// </summary>
    private static void CircuitsOfRun(Trainer trainer, RunFolder run, TextWriter stdout)
    {
        var clock = Stopwatch.StartNew();
        string ckpt = trainer.Options.Out;
        var loaded = Checkpoint.Load(ckpt);
        int T = loaded.Model.Config.NCtx;
        var data = EvalData.Validation(trainer.Data, CircuitsVerb.DefaultBatchSize(T), T, CircuitsVerb.DefaultBatches);
        CircuitsVerb.Report(stdout, ckpt, loaded, data, new CircuitsOptions(), run.CircuitsDir, json: false, clock);
    }

    /// <summary>Before any training: --out must be a writable file path, and not an existing checkpoint unless --overwrite.</summary>
    private static void CheckOut(string path, bool overwrite)
    {
        if (Directory.Exists(path)) throw new UsageError($"--out '{path}' is a directory: give a file path such as {Path.Combine(path, "model.safetensors")}");
        if (File.Exists(path) && !overwrite)
            throw new UsageError($"'{path}' already holds a checkpoint: pass --overwrite to replace it, --resume {path} to continue it, or another --out");
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, $".minigpt-write-test-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"cannot write checkpoints to '{dir}' ({e.Message}): choose another --out");
        }
    }

    /// <summary>
    /// A log line, at most 80 columns: "step S/N | loss L | lr R | T tok/s | elapsed, ETA" (lr left out where it would
    /// not fit); an evaluation adds a
    /// second line under it, "| val V | copy loss C" (with bits per byte for text). The copy loss is the mean
    /// loss on the validation positions whose target is a predictable copy (the induction task's copied
    /// spans), not circuits' repeated-half loss, which is measured on other sequences (see the README).
    /// Elapsed is the run's training time across resumes; tok/s and the ETA leave out this process's warm-up.
    /// </summary>

    public static string Format(TrainLog l, int steps)
    {
        string step = ConsoleLine.StepField(l.Step, steps);
        var parts = new List<string> { step };
        if (float.IsFinite(l.Loss)) parts.Add($"loss {l.Loss:F4}");
        if (l.Step > 0)
        {
            parts.Add($"lr {l.Lr:0.00e+00}");
            if (l.TokensPerSecond > 0) parts.Add($"{l.TokensPerSecond:N0} tok/s");
            parts.Add($"{Duration.Short(l.Elapsed)}{(l.TokensPerSecond > 0 ? $", ETA {Duration.Short(l.Eta)}" : "")}");
        }
        var eval = new List<string>();
        if (l.ValLoss is float v) eval.Add(l.ValBitsPerByte is float bpb ? $"val {v:F4} ({bpb:F3} bits/byte)" : $"val {v:F4}");
        if (l.RepeatLoss is float r) eval.Add($"copy loss {r:F4}");
        // step 0 is an evaluation only: one line
        if (parts.Count == 1) return string.Join(" | ", [.. parts, .. eval]);
        // a run of 10⁵ steps, hours long, at millions of tokens/s would pass 80 columns: lr (metrics.jsonl has it) gives way
        string line = ConsoleLine.Fields(parts, "lr ");
        return eval.Count == 0 ? line : line + "\n" + ConsoleLine.Under(step, eval);
    }

    /// <summary>
    /// The options of a fine-tuning run from F: the model-shape options and --tokenizer may be given only when they
    /// agree with F (a usage error otherwise: the shape comes from the checkpoint), --n-ctx may be shorter than F's
    /// (W_pos is cropped), and --tie-embeddings defaults to whether F's W_U is exactly W_Eᵀ.
    /// </summary>
    private static TrainOptions FineTuneOptions(Options o, TrainOptions opts, string from, Checkpoint.Loaded source)
    {
        var f = source.Model.Config;
        void Agree<T>(Option<T> opt, T theirs, string key, Func<T, T, bool>? same = null)
        {
            if (!o.Has(opt)) return;
            T ours = o.Get(opt);
            if (!(same ?? EqualityComparer<T>.Default.Equals)(ours, theirs))
                throw new UsageError($"--{opt.Name} {Show(ours)} disagrees with '{from}', whose {key} is {Show(theirs)}: with --init-from the model's shape comes from the checkpoint; drop --{opt.Name}");
        }
        static string Show<T>(T v) => v switch { null => "none", bool b => b ? "true" : "false", IFormattable x => x.ToString(null, CultureInfo.InvariantCulture), _ => v.ToString()! };
        Agree(ModelOptions.NLayers, f.NLayers, "n_layers");
        Agree(ModelOptions.DModel, f.DModel, "d_model");
        Agree(ModelOptions.NHeads, f.NHeads, "n_heads");
        Agree(ModelOptions.DHead, f.DHead, "d_head");
        Agree(ModelOptions.DMlp, f.DMlp, "d_mlp");
        Agree(ModelOptions.DVocab, f.DVocab, "d_vocab");
        Agree(ModelOptions.AttnOnly, f.AttnOnly, "attn_only");
        Agree(ModelOptions.Normalization, f.NormalizationType, "normalization_type");
        Agree(ModelOptions.PositionalEmbedding, f.PositionalEmbeddingType, "positional_embedding_type");
        // a float on the command line: compared at float precision
        Agree(ModelOptions.InitializerRange, f.EffectiveInitRange, "initializer_range", (a, b) => (float)a.GetValueOrDefault() == (float)b.GetValueOrDefault());
        string? theirTok = source.TokenizerJson != null ? Tokenizers.FromJson(source.TokenizerJson).Name : null;
        if (o.Has(Tokenizer) && o.Get(Tokenizer) != theirTok)
            throw new UsageError($"--tokenizer {o.Get(Tokenizer)} disagrees with '{from}', whose tokenizer is {theirTok ?? "none (token ids)"}: with --init-from the text is encoded with the checkpoint's; drop --tokenizer");
        if (o.Has(ModelOptions.NCtx) && o.Get(ModelOptions.NCtx) > f.NCtx)
            throw new UsageError($"--n-ctx {o.Get(ModelOptions.NCtx)} is longer than the n_ctx {f.NCtx} of '{from}': W_pos has no rows beyond it; give --n-ctx ≤ {f.NCtx} or leave it out");
        bool tied = Trainer.HasTiedEmbeddings(source.Model);
        if (o.Has(TieEmbeddings) && o.Get(TieEmbeddings) && !tied)
            throw new UsageError($"--tie-embeddings: the W_U of '{from}' is not W_Eᵀ, so tying would change the model; drop --tie-embeddings (it trains untied)");
        return opts with
        {
            InitFrom = from,
            Model = f with { NCtx = o.Has(ModelOptions.NCtx) ? o.Get(ModelOptions.NCtx) : f.NCtx },
            TieEmbeddings = o.Has(TieEmbeddings) ? o.Get(TieEmbeddings) : tied,
        };
    }

    private static TrainOptions FromOptions(Options o) => new()
    {
        Data = o.Get(Data), Val = o.Get(Val), Out = o.Get(Out) ?? D.Out, Tokenizer = o.Get(Tokenizer),
        Model = ModelOptions.Read(o), TieEmbeddings = o.Get(TieEmbeddings),
        Optimizer = o.Get(Optimizer), BatchSize = o.Get(SharedOptions.BatchSize), Steps = o.Get(Steps),
        Lr = o.Get(Lr), MinLr = o.Get(MinLr), WarmupSteps = o.Get(WarmupSteps),
        WeightDecay = o.Get(WeightDecay), Beta1 = o.Get(Beta1), Beta2 = o.Get(Beta2), GradClip = o.Get(GradClip),
        EvalInterval = o.Get(EvalInterval), EvalBatches = o.Get(EvalBatches), LogInterval = o.Get(LogInterval),
        CheckpointInterval = o.Get(CheckpointInterval), Seed = o.Get(Seed),
    };
}

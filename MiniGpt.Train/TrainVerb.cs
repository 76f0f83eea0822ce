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
    public static Options Declare()
    {
        var d = new TrainOptions();
        return new Options("train", "train: trains a GPT and writes checkpoints (safetensors, loadable by TransformerLens).")
            .Add("data", d.Data, "'induction' (generated task), a UTF-8 text file (tokenized with --tokenizer), a folder written by prepare, or a .bin of uint16 tokens")
            .Add("val", "none: the last 10 % of --data", "separate validation file (otherwise the last 10 % of --data)")
            .Add("tokenizer", d.Tokenizer, "for text data: char, bpe:N (byte-level BPE of N tokens learned from the text), cl100k_base or o200k_base (GPT-4/4o, compacted to the corpus's tokens)")
            .Add("name", "date-time and data, e.g. 20261125-143512-induction", "run folder runs/NAME/: config.json, metrics.jsonl, model.safetensors, loss.png")
            .Add("runs-dir", RunFolder.Root, "folder that holds the run folders")
            .Add("out", "none: runs/NAME/model.safetensors", "write only a checkpoint at this path instead of a run folder; training state goes beside it as *.train.safetensors")
            .Add("resume", "none", "continue a run exactly where it stopped: a run folder (runs/NAME) or a checkpoint path (other options come from it)")
            .Flag("track-circuits", "score every head (previous-token, induction, …) at each evaluation: shown on the progress line, logged to <checkpoint stem>.circuits.jsonl; a run folder also gets the circuits report at the end")
            .Flag("overwrite", "replace an existing run folder or checkpoint (otherwise train refuses, so no run is lost)")
            .Add("n-layers", d.NLayers.ToString(), "transformer blocks (0 = bigram model)")
            .Add("d-model", d.DModel.ToString(), "residual stream width")
            .Add("n-heads", d.NHeads.ToString(), "attention heads per block")
            .Add("d-head", "d_model / n_heads", "width of each head")
            .Add("d-mlp", "4·d_model", "MLP hidden width")
            .Add("n-ctx", "32 for induction, 128 for files", "context length (tokens per window)")
            .Add("d-vocab", "from the data (max(64, 2·n_ctx) for induction)", "vocabulary size; required for .bin data")
            .Flag("attn-only", "no MLPs (default for the induction task; --attn-only=false to force MLPs)")
            .Add("normalization", d.Normalization, "LN or none")
            .Add("positional-embedding", d.PositionalEmbedding, "standard, or shortformer (positions only in queries and keys)")
            .Add("initializer-range", "0.8/√d_model", "std of the normal init of every W_* (TransformerLens initializer_range)")
            .Flag("tie-embeddings", "tie W_U to W_Eᵀ as nanoGPT does (written to the checkpoint as an explicit W_U)")
            .Add("optimizer", d.Optimizer, "adamw or sgd")
            .Add("batch-size", d.BatchSize.ToString(), "windows per step")
            .Add("steps", d.Steps.ToString(), "optimizer steps")
            .Add("lr", "3e-3 for induction, 1e-3 for files", "peak learning rate")
            .Add("min-lr", "lr / 10", "learning rate at the end of the cosine decay")
            .Add("warmup-steps", d.WarmupSteps.ToString(), "linear warm-up steps")
            .Add("weight-decay", d.WeightDecay.ToString(CultureInfo.InvariantCulture), "AdamW decoupled decay of the weight matrices")
            .Add("beta1", d.Beta1.ToString(CultureInfo.InvariantCulture), "Adam β1")
            .Add("beta2", d.Beta2.ToString(CultureInfo.InvariantCulture), "Adam β2")
            .Add("grad-clip", d.GradClip.ToString(CultureInfo.InvariantCulture), "clip the global gradient norm to this (0 = off)")
            .Add("eval-interval", d.EvalInterval.ToString(), "steps between validation losses")
            .Add("eval-batches", d.EvalBatches.ToString(), "validation batches per evaluation (at most 8 for the induction task)")
            .Add("log-interval", d.LogInterval.ToString(), "steps between progress lines")
            .Add("checkpoint-interval", d.CheckpointInterval.ToString(), "steps between checkpoints (one is always written at the end)")
            .Add("seed", d.Seed.ToString(), "seed for init and data order")
            .Add("threads", "all cores", "worker threads (results are identical for any count)");
    }

    /// <summary>Exit code of a run stopped by Ctrl-C after writing its checkpoint (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        bool overwrite = o.Bool("overwrite") == true;
        Trainer trainer;
        RunFolder? run = null;
        if (o.Str("resume") is { } resume)
        {
            // a resumed run is the same run: its settings come from the checkpoint, so other options would be ignored
            string[] allowed = ["resume", "out", "threads", "overwrite", "track-circuits"];
            if (o.GivenNames.FirstOrDefault(n => !allowed.Contains(n)) is { } extra)
                throw new UsageError($"--{extra} cannot be changed when resuming (the run continues with its saved settings): drop it, or start a new run");
            if (Directory.Exists(resume))
            {
                if (o.Has("out")) throw new UsageError($"--out cannot be combined with --resume of a run folder: the run continues in '{resume}'");
                string ckpt = RunFolder.CheckpointIn(resume);
                trainer = Trainer.Resume(ckpt, saved => saved with { Out = ckpt });
                run = RunFolder.Reopen(resume, trainer.Optimizer.Step);
            }
            else
            {
                string outPath = o.Str("out") ?? resume;
                if (outPath != resume) CheckOut(outPath, overwrite);
                trainer = Trainer.Resume(resume, saved => saved with { Out = outPath });
            }
            stdout.WriteLine($"resuming {resume} at step {trainer.Optimizer.Step} of {trainer.Options.Steps}");
        }
        else
        {
            var opts = FromOptions(o);
            if (o.Has("out"))
            {
                if (o.Has("name") || o.Has("runs-dir")) throw new UsageError("--name/--runs-dir and --out cannot be combined: --name writes a run folder runs/NAME/, --out a single checkpoint");
                CheckOut(opts.Out, overwrite);
            }
            else
            {
                run = RunFolder.Plan(o.Str("name"), opts.Data, overwrite, o.Str("runs-dir", RunFolder.Root));
                opts = opts with { Out = run.Checkpoint };
            }
            trainer = Trainer.Start(opts);
            run?.Begin(trainer);
        }

        var t = trainer.Options;
        var c = trainer.Model.Config;
        stdout.WriteLine($"data: {trainer.Data.Describe()}");
        stdout.WriteLine($"model: {c.NLayers} layers, d_model {c.DModel}, {c.NHeads} heads × {c.DHead}, " +
            $"{(c.AttnOnly ? "attention-only" : $"d_mlp {c.DMlp}")}, n_ctx {c.NCtx}, d_vocab {c.DVocab}, " +
            $"{(c.HasLayerNorm ? "LayerNorm" : "no LayerNorm")}, {c.PositionalEmbeddingType} positions, {trainer.Model.ParameterCount:N0} parameters");
        stdout.WriteLine($"training: {t.Optimizer} lr {t.Lr:G3}→{t.MinLr:G3} (warm-up {t.WarmupSteps}), batch {t.BatchSize}, {t.Steps} steps, " +
            $"seed {t.Seed}, {Tensors.WorkerPool.Shared.Threads} threads → {t.Out}");
        if (run != null) stdout.WriteLine($"run folder: {run.Dir}{Path.DirectorySeparatorChar} (config.json, metrics.jsonl, loss.png)");

        // resuming appends to the run's log, a new run starts it afresh
        var tracker = o.Bool("track-circuits") == true ? new CircuitTracker(trainer.Model, t.Out, append: o.Has("resume")) : null;
        if (tracker != null) stdout.WriteLine($"tracking circuits at every evaluation → {tracker.LogPath}");

        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stop.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            ProgressView.Run(stdout, "train", sink =>
            {
                var live = new LiveStatus(trainer);
                trainer.Run(log =>
                    {
                        sink.Line(Format(log, t.Steps) + (tracker != null && log.ValLoss != null ? tracker.Record(log) : ""));
                        run?.Record(log);
                        live.Logged(log);
                    },
                    () => stop.IsCancellationRequested,
                    (step, loss) =>
                    {
                        live.Stepped(loss);
                        if (sink.WantsStatus) sink.Report(step, t.Steps, live.Status(step));
                    });
                return 0;
            });
        }
        finally { Console.CancelKeyPress -= onCancel; }
        run?.DrawPlot(wait: true);
        if (stop.IsCancellationRequested)
        {
            string again = run?.Dir ?? t.Out;
            stdout.WriteLine($"interrupted at step {trainer.Optimizer.Step}: checkpoint written to {t.Out}; continue with --resume {again}");
            return Interrupted;
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

    public static string Format(TrainLog l, int steps)
    {
        var parts = new List<string> { $"step {l.Step.ToString().PadLeft(steps.ToString().Length)}/{steps}" };
        if (float.IsFinite(l.Loss)) parts.Add($"loss {l.Loss:F4}");
        if (l.ValLoss is float v) parts.Add(l.ValBitsPerByte is float bpb ? $"val {v:F4} ({bpb:F3} bits/byte)" : $"val {v:F4}");
        if (l.RepeatLoss is float r) parts.Add($"repeat {r:F4}");
        if (l.Step > 0)
        {
            parts.Add($"lr {l.Lr:0.00e+00}");
            parts.Add($"{l.TokensPerSecond:N0} tok/s");
            parts.Add($"{l.Elapsed:m\\:ss} elapsed, ETA {l.Eta:m\\:ss}");
        }
        return string.Join(" | ", parts);
    }

    private static TrainOptions FromOptions(Options o)
    {
        var d = new TrainOptions();
        string norm = o.Str("normalization", d.Normalization);
        if (norm.Equals("none", StringComparison.OrdinalIgnoreCase)) norm = "none";
        return new TrainOptions
        {
            Data = o.Str("data", d.Data), Val = o.Str("val"), Out = o.Str("out", d.Out), Tokenizer = o.Str("tokenizer", d.Tokenizer),
            NLayers = o.Int("n-layers") ?? d.NLayers, DModel = o.Int("d-model") ?? d.DModel, NHeads = o.Int("n-heads") ?? d.NHeads,
            DHead = o.Int("d-head"), DMlp = o.Int("d-mlp"), NCtx = o.Int("n-ctx") is int nctx ? (nctx > 0 ? nctx : throw new UsageError($"--n-ctx must be > 0, got {nctx}")) : d.NCtx, DVocab = o.Int("d-vocab"),
            AttnOnly = o.Bool("attn-only"), Normalization = norm, PositionalEmbedding = o.Str("positional-embedding", d.PositionalEmbedding),
            InitRange = o.Float("initializer-range"), TieEmbeddings = o.Bool("tie-embeddings") ?? false,
            Optimizer = o.Str("optimizer", d.Optimizer), BatchSize = o.Int("batch-size") ?? d.BatchSize, Steps = o.Int("steps") ?? d.Steps,
            Lr = o.Float("lr") is float lr ? (lr > 0 ? lr : throw new UsageError($"--lr must be > 0, got {lr}")) : d.Lr, MinLr = o.Float("min-lr") ?? d.MinLr, WarmupSteps = o.Int("warmup-steps") ?? d.WarmupSteps,
            WeightDecay = o.Float("weight-decay") ?? d.WeightDecay, Beta1 = o.Float("beta1") ?? d.Beta1, Beta2 = o.Float("beta2") ?? d.Beta2,
            GradClip = o.Float("grad-clip") ?? d.GradClip, EvalInterval = o.Int("eval-interval") ?? d.EvalInterval,
            EvalBatches = o.Int("eval-batches") ?? d.EvalBatches, LogInterval = o.Int("log-interval") ?? d.LogInterval,
            CheckpointInterval = o.Int("checkpoint-interval") ?? d.CheckpointInterval, Seed = o.ULong("seed") ?? d.Seed,
        };
    }
}

using System.Diagnostics;
using System.Globalization;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Sae;
using MiniGpt.Train.Progress;
using MiniGpt.Train.Report;

namespace MiniGpt.Train;

/// <summary>
/// sae: trains a sparse autoencoder on the activations at one hook point of a checkpoint, streamed from --data, then
/// measures it on held-out windows and writes it in SAELens's layout with sae.json and report.html.
/// </summary>
public static class SaeVerb
{
    private static readonly Option<string?> Data = Option.OptionalText("data",
        "tokens to read: a UTF-8 text (the checkpoint's tokenizer; first 90 % train, last 10 % held out), a folder written by prepare, a .bin, or induction",
        "induction without a tokenizer, else required");
    private static readonly Option<string> Hook = Option.Text("hook", "hook point to read, e.g. blocks.0.hook_resid_post, blocks.0.hook_mlp_out, blocks.0.mlp.hook_post", "blocks.0.hook_resid_post").Shown("HOOK");
    private static readonly Option<string> Architecture = Option.Text("architecture", "topk (Gao et al. 2024) or relu (L1 penalty weighted by decoder norms, Anthropic 2024; on the README's model it trails topk at every L0)", "topk").Choices("topk", "relu");
    private static readonly Option<int> K = Option.Int("k", "features kept per activation by topk (L0 = k)", 16);
    private static readonly Option<int?> DSae = Option.Of<int?>("d-sae", "features of the SAE", null, "8 × d_in", (n, v) => Option.ParseInt(n, v));
    private static readonly Option<float> L1 = Option.Float("l1", "λ of relu's sparsity penalty, on activations scaled to E‖x‖² = d_in", 5f);
    private static readonly Option<float> Lr = Option.Float("lr", "learning rate (AdamW, warm-up, linear decay to 0 over the last 20 %)", 1e-3f);
    private static readonly Option<int> Steps = Option.Int("steps", "training steps", 4000);
    private static readonly Option<int> BatchRows = Option.Int("batch-rows", "activations per step", 1024);
    private static readonly Option<int> Buffer = Option.Int("buffer", "rows of the shuffled activation buffer", 65536);
    private static readonly Option<bool> Resample = Option.Flag("resample", "resample dead features at 25 %, 50 % and 75 % of training (Anthropic 2023)");
    private static readonly Option<int> EvalBatches = Option.Int("eval-batches", "held-out batches of 16 windows for the metrics and the report", 16);
    private static readonly Option<int> Features = Option.Int("features", "features shown in the report", 24);
    private static readonly Option<ulong> Seed = Option.ULong("seed", "seed of the initialisation and the data order", 1);
    private static readonly Option<string?> Out = Option.OptionalText("out", "folder for sae_weights.safetensors, cfg.json, sae.json, the PNGs and report.html", "<checkpoint stem>.sae/");
    private static readonly Option<bool> Json = Option.Flag("json", "print sae.json to stdout instead of the summary");

    internal static Options Declare() =>
        new Options("sae", "sae: a sparse autoencoder on one hook point of a checkpoint. Streams activations from --data into a shuffled buffer, trains\n" +
                           "(relu or topk), measures L0, explained variance, MSE, loss recovered (the reconstruction spliced into the model) and dead/dense\n" +
                           "features on held-out windows, and writes the SAE in SAELens's layout with sae.json, PNGs and report.html.",
            SharedOptions.Checkpoint, Data, Hook, Architecture, K, DSae, L1, Lr, Steps, BatchRows, Buffer, Resample, EvalBatches, Features, Seed, Out, Json, SharedOptions.Threads);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        var clock = Stopwatch.StartNew();
        string ckpt = o.Get(SharedOptions.Checkpoint);
        var arch = o.Get(Architecture) switch
        {
            "relu" => SaeArchitecture.Relu,
            "topk" => SaeArchitecture.TopK,
            var a => throw new UsageError($"--architecture '{a}' is not an SAE architecture: use relu or topk"),
        };
        if (o.Get(DSae) is int ds && ds < 1) throw new UsageError($"--d-sae {ds}: an SAE needs at least 1 feature; give e.g. 8 × d_in (the default)");
        if (o.Get(Steps) < 1) throw new UsageError($"--steps {o.Get(Steps)}: give at least 1 step");
        if (o.Get(BatchRows) < 1) throw new UsageError($"--batch-rows {o.Get(BatchRows)}: give at least 1 activation per step");
        if (o.Get(Features) < 0) throw new UsageError($"--features {o.Get(Features)}: give how many features the report shows (0 or more)");
        if (o.Get(Buffer) < 1) throw new UsageError($"--buffer {o.Get(Buffer)}: give the activation buffer's rows (it is raised to at least 2 × --batch-rows)");
        if (o.Get(EvalBatches) < 1) throw new UsageError($"--eval-batches {o.Get(EvalBatches)}: give at least 1 batch");
        if (!(o.Get(L1) >= 0)) throw new UsageError($"--l1 {o.Get(L1)}: the penalty must be ≥ 0");
        if (!(o.Get(Lr) > 0)) throw new UsageError($"--lr {o.Get(Lr)}: the learning rate must be > 0");
        string? outOption = o.Get(Out);

        var loaded = Checkpoint.Load(ckpt);
        var model = loaded.Model;
        if (model.Config.NLayers == 0 && o.Get(Hook).StartsWith("blocks.", StringComparison.Ordinal))
            throw new UserError($"'{ckpt}' is a zero-layer model: it has no {o.Get(Hook)}; give --hook hook_embed");
        string data = o.Get(Data) ?? (loaded.TokenizerJson == null ? "induction"
            : throw new UsageError($"'{ckpt}' was trained on text: give --data with text to read (e.g. the training file)"));
        var dIn = ActivationStore.WidthOf(model, o.Get(Hook)); // the hook's one-line error before anything else
        if (arch == SaeArchitecture.TopK)
        {
            int dSae = o.Get(DSae) ?? 8 * dIn;
            if (o.Get(K) < 1 || o.Get(K) > dSae) throw new UsageError($"--k {o.Get(K)} must be in [1, d_sae = {dSae}]");
        }
        var source = SaeData.Open(data, loaded);
        var heldOut = source.ValidationBatches(16, model.Config.NCtx, o.Get(EvalBatches));
        var options = new SaeTrainOptions
        {
            Hook = o.Get(Hook), DSae = o.Get(DSae) ?? 0, Architecture = arch, K = o.Get(K), L1Coefficient = o.Get(L1), Lr = o.Get(Lr),
            Steps = o.Get(Steps), BatchRows = o.Get(BatchRows), BufferRows = o.Get(Buffer), Seed = o.Get(Seed),
            ResampleAt = o.Get(Resample) ? [0.25, 0.5, 0.75] : [], LogInterval = Math.Max(1, o.Get(Steps) / 40),
        };

        // the folder last among the checks (a mistake above leaves none behind) and before minutes of training
        string dir = ReportFolder.Prepare(outOption ?? Checkpoint.Stem(ckpt) + ".sae", out bool created);
        try { Train(o, stdout, ckpt, loaded, model, source, heldOut, options, data, dir, clock); }
        catch { ReportFolder.RemoveIfUnused(dir, created); throw; }
        return 0;
    }

    private static void Train(Options o, TextWriter stdout, string ckpt, Checkpoint.Loaded loaded, Model.GptModel model, IBatchSource source,
        IReadOnlyList<EvalBatch> heldOut, SaeTrainOptions options, string data, string dir, Stopwatch clock)
    {
        var tokenizer = loaded.TokenizerJson is { } tj ? Tokenizers.FromJson(tj) : null;
        var text = new TokenText(tokenizer);
        var during = new List<(int Step, SaeEvaluationResult Result)>();
        var (trainer, sae, eval, features, geometry, trainSeconds) = ProgressView.Run(stdout, "sae", sink =>
        {
            var t = new SaeTrainer(model, source, options);
            // loss recovered during training: the SAE so far measured on the first two held-out batches, ten times
            var probe = heldOut.Take(2).ToList();
            int every = 4 * options.LogInterval;
            var evalClock = new Stopwatch();
            var sw = Stopwatch.StartNew();
            t.Run(log =>
            {
                string measured = "";
                if (log.Step % every == 0 || log.Step == options.Steps)
                {
                    evalClock.Start();
                    var r = SaeEvaluation.Run(model, t.Result(), probe);
                    evalClock.Stop();
                    during.Add((log.Step, r));
                    measured = "\n" + ConsoleLine.Under(ConsoleLine.StepField(log.Step, options.Steps),
                        [string.Create(CultureInfo.InvariantCulture, $"held out: L0 {r.L0:0.0}, EV {r.ExplainedVariance:0.000}, loss recovered {r.LossRecovered:0.000}")]);
                }
                if (!sink.WantsStatus && !o.Get(Json)) sink.Line(Format(log, options.Steps) + measured);
                sink.Report(log.Step, options.Steps, $"L0 {log.L0:0.0} · EV {log.ExplainedVariance:0.000} · dead {log.Dead}");
            });
            double secs = sw.Elapsed.TotalSeconds - evalClock.Elapsed.TotalSeconds; // training alone
            var sae = t.Result();
            sink.Report(options.Steps, options.Steps, "evaluating");
            var e = SaeEvaluation.Run(model, sae, heldOut);
            var chosen = SaeReport.PickFeatures(e, o.Get(Features));
            var f = SaeFeatures.Analyse(model, sae, heldOut, chosen);
            var g = SaeGeometry.Measure(sae, Enumerable.Range(0, e.Frequency.Length).Where(i => e.Frequency[i] > 0).ToList());
            return (t, sae, e, f, g, secs);
        });
        var written = SaeReport.Write(dir, ckpt, trainer, sae, eval, during, features, geometry, text, trainSeconds, data);
        if (o.Get(Json)) stdout.WriteLine(written.Json);
        else
        {
            stdout.Write(SaeReport.Summary(trainer, eval, geometry, trainSeconds));
            stdout.WriteLine(ConsoleLine.Wrap($"wrote {dir}{Path.DirectorySeparatorChar} in {clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s: {SaeFile.WeightsName}, {SaeFile.ConfigName}, sae.json, {written.Plots} plots, report.html", 6));
        }
    }


    /// <summary>
    /// A log line of at most 80 columns: step, mse, L0, EV, λ (relu's L1 coefficient; topk has none), lr, dead features,
    /// activations/s; lr, then the speed, give way when the line would be wider (the held-out metrics go on a line under it).
    /// </summary>
    internal static string Format(SaeTrainLog l, int steps)
    {
        var inv = CultureInfo.InvariantCulture;
        var fields = new List<string> { ConsoleLine.StepField(l.Step, steps), string.Create(inv, $"mse {l.Mse:0.0000}"), string.Create(inv, $"L0 {l.L0:0.0}"),
            string.Create(inv, $"EV {l.ExplainedVariance:0.000}") };
        if (l.L1Coefficient != 0) fields.Add(string.Create(inv, $"λ {l.L1Coefficient:0.00}"));
        fields.Add(string.Create(inv, $"lr {l.Lr:0.00e+00}"));
        fields.Add($"dead {l.Dead}");
        fields.Add(string.Create(inv, $"{l.TokensPerSecond:N0} act/s"));
        return ConsoleLine.Fields(fields, "lr ", " act/s");
    }
}

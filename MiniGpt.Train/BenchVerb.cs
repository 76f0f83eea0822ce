using System.Diagnostics;
using System.Globalization;
using MiniGpt.Tensors;
using MiniGpt.Train.Progress;
using MiniGpt.Training;

namespace MiniGpt.Train;

/// <summary>
/// bench: times whole training steps (forward, backward, clip, AdamW) of any model shape on the generated
/// induction data and prints the median ms/step, tokens/s and model FLOP utilisation (Flops.PerStep ÷
/// time ÷ Flops.MachinePeak).
/// </summary>
public static class BenchVerb
{
    private static readonly Option<int> Steps = Option.Int("steps", "measured steps", 20).Check(n => n >= 1, "must be at least 1");
    private static readonly Option<float> Warmup = Option.Float("warmup", "seconds of warm-up steps before measuring (at least 5 steps)", 2)
        .Check(s => s >= 0, "must be a number of seconds ≥ 0");
    private static readonly Option<bool> Json = Option.Flag("json", "print one JSON line instead of text");
    private static readonly Option<bool> Profile = Option.Flag("profile",
        "time the measured steps phase by phase (forward and backward of each layer kind, optimizer) with GFLOP/s and the threads' busy time");

    /// <summary>The shape and batch options are train's, with train's defaults: bench alone times the default run's step.</summary>
    public static Options Declare() =>
        new Options("bench", "bench: median time of a training step for a model shape, with tokens/s and model FLOP utilisation.\n" +
                             "It trains on the induction task; the model options and --batch-size are train's, with train's defaults.")
            .Add(ModelOptions.ForInductionTask)
            .Add(SharedOptions.BatchSize, Steps, Warmup, SharedOptions.Threads, Json, Profile);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        int steps = o.Get(Steps);
        var opts = new TrainOptions
        {
            Data = "induction", Model = ModelOptions.Read(o), BatchSize = o.Get(SharedOptions.BatchSize), Steps = 1_000_000_000,
            Out = Path.Combine(Path.GetTempPath(), "minigpt-bench", "model.safetensors"),
        };
        double warmup = o.Get(Warmup);
        var trainer = Trainer.Start(opts);
        // The JIT recompiles hot methods with profile data (tiered PGO) in the background, after ~30 calls and a
        // quiet spell: a fixed handful of steps left a WC step median at ~36 ms where steady state is ~25 ms.
        // Warming up for a time, as BenchmarkDotNet does, measures the code a long training run actually runs.
        long w0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < 5 || Stopwatch.GetElapsedTime(w0).TotalSeconds < warmup; i++) trainer.Step();
        var times = new double[steps];
        bool profile = o.Get(Profile);
        if (profile) StepProfiler.Start();
        for (int i = 0; i < steps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            trainer.Step();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        if (profile) StepProfiler.Stop();
        Array.Sort(times);
        double median = steps % 2 == 1 ? times[steps / 2] : (times[steps / 2 - 1] + times[steps / 2]) / 2;
        var c = trainer.Model.Config;
        double tokens = (double)opts.BatchSize * c.NCtx;
        double flops = Flops.PerStep(c, opts.BatchSize, c.NCtx);
        var peak = Flops.MachinePeak(Tensors.WorkerPool.Shared.Threads);
        double mfu = flops / (median / 1e3) / peak.FlopsPerSecond;
        // The same clock and FMA pipes at 256 bits: the datapath LibTorch/OpenBLAS use on this CPU (issue 4's
        // "practical peak"), so MFU can be read against either.
        double peak256 = peak.FlopsPerSecond * 256 / peak.VectorBits;
        double mfu256 = flops / (median / 1e3) / peak256;
        var inv = CultureInfo.InvariantCulture;
        if (o.Get(Json))
            stdout.WriteLine(string.Create(inv, $"{{\"engine\": \"minigpt\", \"threads\": {peak.Threads}, \"params\": {trainer.Model.ParameterCount}, \"B\": {opts.BatchSize}, \"T\": {c.NCtx}, " +
                $"\"median_ms\": {median:F2}, \"min_ms\": {times[0]:F2}, \"max_ms\": {times[^1]:F2}, \"tokens_per_s\": {tokens / (median / 1e3):F1}, " +
                $"\"model_gflop_per_step\": {flops / 1e9:F3}, \"peak_gflops\": {peak.FlopsPerSecond / 1e9:F1}, \"mfu\": {mfu:F4}, " +
                $"\"peak256_gflops\": {peak256 / 1e9:F1}, \"mfu256\": {mfu256:F4}}}"));
        else
        {
            // within 80 columns: lists wrapped after a comma, continuation lines indented under the label
            stdout.WriteLine(ConsoleLine.Wrap(string.Create(inv, $"model: {c.NLayers} layers, d_model {c.DModel}, {c.NHeads} heads × {c.DHead}, {(c.AttnOnly ? "attention-only" : $"d_mlp {c.DMlp}")}, n_ctx {c.NCtx}, batch {opts.BatchSize}, {peak.Threads} threads"), 7));
            stdout.WriteLine(ConsoleLine.Wrap(string.Create(inv, $"step: median {median:F2} ms (min {times[0]:F2}, max {times[^1]:F2}, {steps} steps), {tokens / (median / 1e3):N0} tokens/s"), 6));
            // "peak P GFLOP/s = cores × pipes × lanes × 2 × clock (how it was found)": its derivation on a line of its own
            string peakText = peak.ToString();
            int eq = peakText.IndexOf(" = ", StringComparison.Ordinal);
            stdout.WriteLine(string.Create(inv, $"MFU {mfu * 100:F1} %: {flops / 1e9:F2} GFLOP per step at {flops / (median / 1e3) / 1e9:F0} GFLOP/s; {(eq > 0 ? peakText[..eq] : peakText)}"));
            if (eq > 0) stdout.WriteLine($"  {peakText[(eq + 1)..]}");
            if (peak.VectorBits > 256)
                stdout.WriteLine(ConsoleLine.Wrap(string.Create(inv, $"MFU {mfu256 * 100:F1} % of the same cores at 256 bits ({peak256 / 1e9:F0} GFLOP/s, the path LibTorch and OpenBLAS take here)"), 4));
        }
        if (profile) WriteProfile(stdout, c, opts.BatchSize, steps, peak, o.Get(Json));
        return 0;
    }

    // One row per phase that ran: ms per step (mean over the measured steps), share of the step, model GFLOP/s and
    // the fraction of the peak where the phase multiplies matrices, and the threads' busy fraction (StepProfiler).
    private static void WriteProfile(TextWriter stdout, Model.ModelConfig c, int batch, int steps, Flops.Peak peak, bool json)
    {
        var inv = CultureInfo.InvariantCulture;
        double total = 0, idle = 0;
        foreach (var p in Enum.GetValues<StepPhase>())
        {
            total += StepProfiler.Seconds(p);
            idle += StepProfiler.Seconds(p) * (1 - StepProfiler.Utilisation(p));
        }
        if (!json)
        {
            stdout.WriteLine();
            stdout.WriteLine(string.Create(inv, $"{"phase",-16} {"ms/step",8} {"share",6} {"GFLOP/s",8} {"of peak",7} {"busy",5}"));
        }
        foreach (var p in Enum.GetValues<StepPhase>())
        {
            double s = StepProfiler.Seconds(p);
            if (StepProfiler.EntriesOf(p) == 0 && s * 1e3 / steps < 0.005) continue;
            double ms = s * 1e3 / steps, f = Flops.InPhase(p, c, batch, c.NCtx);
            double rate = f > 0 ? f * steps / s : 0;
            if (json)
                stdout.WriteLine(string.Create(inv, $"{{\"phase\": \"{StepProfiler.Label(p)}\", \"ms_per_step\": {ms:F3}, \"share\": {s / total:F4}, " +
                    $"\"gflops\": {rate / 1e9:F1}, \"of_peak\": {rate / peak.FlopsPerSecond:F4}, \"busy\": {StepProfiler.Utilisation(p):F4}}}"));
            else
            {
                string matmul = f > 0 ? string.Create(inv, $"{rate / 1e9,8:F0} {rate / peak.FlopsPerSecond * 100,6:F1}%") : new string(' ', 16);
                stdout.WriteLine(string.Create(inv, $"{StepProfiler.Label(p),-16} {ms,8:F2} {s / total * 100,5:F1}% {matmul} {StepProfiler.Utilisation(p) * 100,4:F0}%"));
            }
        }
        if (!json)
        {
            // the total row, then the idle time on a line of its own (the row with it was 89 columns)
            stdout.WriteLine(string.Create(inv, $"{"total",-16} {total * 1e3 / steps,8:F2}"));
            stdout.WriteLine(string.Create(inv, $"threads idle {idle / total * 100:F1} % of the step ({idle * 1e3 / steps:F2} ms of {peak.Threads} threads' {total * 1e3 / steps:F2})"));
        }
    }
}

using BenchmarkDotNet.Attributes;
using MiniGpt.Model;
using MiniGpt.Training;

namespace MiniGpt.Bench;

/// <summary>
/// One whole optimisation step (sample, forward, backward, clip, AdamW) via Trainer.Step().
/// Both workloads use the generated induction task, so no data files are needed.
///   default  TrainOptions defaults (the default train run): 2 layers, d_model 64, 4 heads, attention-only, n_ctx 32, batch 32, vocab 64
///   WA, WB   issue 4's workloads: 2 layers, d_model 256, 8 heads × 32, n_ctx 256, batch 16, vocab 65; WB with d_mlp 1024
///   WC       4 layers, d_model 128, 4 heads, d_mlp 512, n_ctx 64, batch 12, vocab 65, with MLPs
/// The Allocated column should read 0 B: a step allocates nothing. MFU is model FLOPs ÷ time ÷ the peak printed in the legend.
/// </summary>
[Config(typeof(BenchConfig))]
public class TrainStepBench
{
    [Params("default", "WA", "WB", "WC")]
    public string Workload { get; set; } = "default";

    private Trainer _trainer = null!;

    public static TrainOptions OptionsFor(string workload)
    {
        var o = new TrainOptions
        {
            Data = "induction",
            Steps = 1_000_000_000, // keep the cosine schedule away from its end however many steps run
            Out = Path.Combine(Path.GetTempPath(), "minigpt-bench", "model.safetensors"),
        };
        return workload switch
        {
            "default" => o,
            "WA" => o with { Model = new() { NLayers = 2, DModel = 256, NHeads = 8, NCtx = 256, DVocab = 65, AttnOnly = true }, BatchSize = 16 },
            "WB" => o with { Model = new() { NLayers = 2, DModel = 256, NHeads = 8, DMlp = 1024, NCtx = 256, DVocab = 65, AttnOnly = false }, BatchSize = 16 },
            "WC" => o with { Model = new() { NLayers = 4, DModel = 128, NHeads = 4, DMlp = 512, NCtx = 64, DVocab = 65, AttnOnly = false }, BatchSize = 12 },
            _ => throw new ArgumentException($"unknown workload '{workload}'"),
        };
    }

    public static double TokensPerStep(string workload)
    {
        var o = OptionsFor(workload).Resolved();
        return (double)o.BatchSize * o.Model.NCtx;
    }

    /// <summary>Model FLOPs of one step (see Flops.PerStep).</summary>
    public static double? FlopsPerStep(string workload)
    {
        var o = OptionsFor(workload);
        if (o.Model.DVocab == ModelConfig.Unset) return null; // "default" takes its vocabulary from the data in Trainer.Start
        var cfg = Trainer.ModelConfigFor(o, o.Model.DVocab);
        return Flops.PerStep(cfg, o.BatchSize, cfg.NCtx);
    }

    [GlobalSetup]
    public void Setup()
    {
        _trainer = Trainer.Start(OptionsFor(Workload));
        for (int i = 0; i < 5; i++) _trainer.Step(); // first steps fill lazily created buffers and JIT the kernels
    }

    [Benchmark]
    public float Step() => _trainer.Step();
}

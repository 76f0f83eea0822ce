using BenchmarkDotNet.Attributes;
using MiniGpt.Training;

namespace MiniGpt.Bench;

/// <summary>
/// One whole optimisation step (sample, forward, backward, clip, AdamW) via Trainer.Step().
/// Both workloads use the generated induction task, so no data files are needed.
///   default  TrainOptions defaults: 2 layers, d_model 64, 4 heads, attention-only, n_ctx 64, batch 32, vocab 64
///   WC       4 layers, d_model 128, 4 heads, d_mlp 512, n_ctx 64, batch 12, vocab 65, with MLPs
/// The Allocated column should read 0 B: a step allocates nothing.
/// </summary>
[Config(typeof(BenchConfig))]
public class TrainStepBench
{
    [Params("default", "WC")]
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
            "WC" => o with
            {
                NLayers = 4, DModel = 128, NHeads = 4, DMlp = 512, NCtx = 64, BatchSize = 12,
                DVocab = 65, AttnOnly = false,
            },
            _ => throw new ArgumentException($"unknown workload '{workload}'"),
        };
    }

    public static double TokensPerStep(string workload)
    {
        var o = OptionsFor(workload);
        return (double)o.BatchSize * o.NCtx;
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

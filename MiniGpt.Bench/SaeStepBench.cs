using BenchmarkDotNet.Attributes;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Sae;

namespace MiniGpt.Bench;

/// <summary>
/// One SAE training step (next shuffled batch from the activation store, forward, loss, backward, AdamW, TopK's decoder
/// normalisation) via SaeTrainer.TrainStep, on the MLP output of a 2-layer d_model 128 model (the shape of the README's
/// shakespeare model, random weights, induction tokens: the step's cost does not depend on what the weights are).
/// d_in 128 → d_sae 1024, 1024 activations per step: 6 matmuls of 1024·128·1024, about 0.81 GFLOP per step.
/// The buffer's refill (a model forward every Capacity/2 rows) falls inside some iterations, as in a real run.
/// Allocated should read 0 B.
/// </summary>
[Config(typeof(BenchConfig))]
public class SaeStepBench
{
    [Params("relu", "topk")]
    public string Architecture { get; set; } = "topk";

    private SaeTrainer _trainer = null!;

    /// <summary>2·N·d_in·d_sae per product, six products (encoder and decoder forward, four backward).</summary>
    public const double FlopsPerStep = 6.0 * 2 * 1024 * 128 * 1024;

    [GlobalSetup]
    public void Setup()
    {
        var m = GptModel.Create(new ModelConfig { NLayers = 2, DModel = 128, NHeads = 4, DHead = 32, DMlp = 512, NCtx = 128, DVocab = 65 }, 1);
        var o = new SaeTrainOptions
        {
            Hook = "blocks.1.hook_mlp_out", DSae = 1024, BatchRows = 1024, Steps = 1_000_000_000,
            Architecture = Architecture == "topk" ? SaeArchitecture.TopK : SaeArchitecture.Relu, K = 16,
        };
        _trainer = new SaeTrainer(m, new InductionTask(65, 128, 1), o);
        for (int i = 0; i < 5; i++) _trainer.TrainStep();
    }

    [Benchmark]
    public double Step() => _trainer.TrainStep().Mse;
}

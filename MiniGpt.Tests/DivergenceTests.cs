using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>NaN or Inf in the loss or the gradients stops training, names the step and the tensor, and keeps the last good checkpoint.</summary>
public class DivergenceTests
{
    private static TrainOptions Tiny(string outPath) => new()
    {
        Model = new() { NLayers = 2, DModel = 32, NHeads = 2, NCtx = 16 }, BatchSize = 8, Steps = 30, WarmupSteps = 5,
        EvalInterval = 10, EvalBatches = 2, LogInterval = 10, CheckpointInterval = 5, Out = outPath, Seed = 42,
    };

    [Fact]
    public void ANaNGradientNamesTheStepAndTensorAndKeepsTheLastCheckpoint()
    {
        string dir = TestPaths.TempDir("nan-grad");
        string ckpt = Path.Combine(dir, "m.safetensors");
        var t = Trainer.Start(Tiny(ckpt));
        // step 8's backward pass puts a NaN into d loss / d resid_post of block 0: the first parameter
        // gradient it reaches (in backward order) is block 0's attention output bias
        int backward = 0;
        using var hook = t.Model.Hooks.AddBackward("blocks.0.hook_resid_post", (g, _) => { if (++backward == 8) g.Span[3] = float.NaN; });
        var e = Assert.Throws<UserError>(() => t.Run(_ => { }));
        Assert.Contains("diverged at step 8", e.Message);
        Assert.Contains("gradient of blocks.0.attn.b_O", e.Message);
        Assert.Contains("step 5", e.Message); // the checkpoint kept
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(7, t.Optimizer.Step);
        Assert.True(t.Model.Params.Buffer.All(float.IsFinite), "the failed update reached the weights");
        Assert.Equal("5", MiniGpt.Checkpoints.SafeTensorsFile.Open(ckpt).Metadata["step"]);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ANaNActivationIsNamedThroughTheLoss()
    {
        string dir = TestPaths.TempDir("nan-act");
        var t = Trainer.Start(Tiny(Path.Combine(dir, "m.safetensors")));
        int forward = 0;
        using var hook = t.Model.Hooks.AddForward("blocks.1.attn.hook_z", (z, _) => { if (++forward == 3) z.Span[0] = float.PositiveInfinity; });
        var e = Assert.Throws<UserError>(() => { for (int i = 0; i < 5; i++) t.Step(); });
        Assert.Contains("diverged at step 3: the loss is NaN", e.Message);
        Assert.Contains("first non-finite activation: blocks.1.attn.hook_z", e.Message);
        Assert.Contains("no checkpoint was written", e.Message);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void AHugeLearningRateExitsWithOneAndLeavesTheCheckpointWhole()
    {
        string dir = TestPaths.TempDir("nan-cli");
        string o = Path.Combine(dir, "m.safetensors");
        var r = TestPaths.Cli("train", "--out", o, "--lr", "1e30", "--warmup-steps", "0", "--steps", "50", "--checkpoint-interval", "1",
            "--n-ctx", "16", "--d-model", "32", "--batch-size", "4", "--eval-batches", "1");
        Assert.Equal(1, r.Code);
        Assert.Matches(@"^error: training diverged at step \d+: ", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        // whatever step it reached, the checkpoint on disk is a good one: finite, and it resumes
        var loaded = MiniGpt.Checkpoints.Checkpoint.Load(o);
        Assert.True(loaded.Model.Params.Buffer.All(float.IsFinite));
        Trainer.Resume(o);
        Directory.Delete(dir, true);
    }
}

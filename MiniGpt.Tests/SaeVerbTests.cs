using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Sae;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>The sae verb end to end, the SAE it writes read back (here and by an independent PyTorch forward), and one-line errors.</summary>
public class SaeVerbTests
{
    private static (string Dir, string Checkpoint) ModelCheckpoint(string name, bool attnOnly = false, int layers = 1)
    {
        string dir = TestPaths.TempDir(name);
        var m = GptModel.Create(new ModelConfig { NLayers = layers, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, AttnOnly = attnOnly, NCtx = 12, DVocab = 24 }, 4);
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, m, null);
        return (dir, ckpt);
    }

    private static readonly string[] Small = ["--steps", "60", "--batch-rows", "64", "--buffer", "1024", "--eval-batches", "2", "--d-sae", "32", "--features", "4", "--threads", "1"];

    [Fact]
    public void SaeWritesAnSaeThatLoadsBackAndReproducesItsMetrics()
    {
        var (dir, ckpt) = ModelCheckpoint("sae-verb");
        var r = TestPaths.Cli(["sae", "--checkpoint", ckpt, "--hook", "blocks.0.hook_mlp_out", .. Small]);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("held out (", r.Out);
        Assert.Contains("loss recovered", r.Out);
        string outDir = Path.Combine(dir, "m.sae");
        foreach (string f in new[] { SaeFile.WeightsName, SaeFile.ConfigName, "sae.json", "report.html", "sae_training.png", "sae_density.png" })
            Assert.True(File.Exists(Path.Combine(outDir, f)), f);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "sae.json"))).RootElement;
        var held = json.GetProperty("held_out");
        Assert.Equal(60, json.GetProperty("training").GetProperty("steps").GetInt32());
        Assert.Equal("blocks.0.hook_mlp_out", json.GetProperty("config").GetProperty("hook_name").GetString());
        Assert.Equal(32, held.GetProperty("frequency").GetArrayLength());
        // loss recovered measured during training too, ending at the step training ended
        var during = json.GetProperty("during_training").EnumerateArray().ToList();
        Assert.True(during.Count >= 2, $"{during.Count} evaluations during training");
        Assert.Equal(60, during[^1].GetProperty("step").GetInt32());
        Assert.Contains("| held out: L0 ", r.Out);

        // the SAE on disk, measured again on the same held-out windows, gives the numbers sae.json holds
        var loaded = Checkpoint.Load(ckpt);
        var sae = SaeFile.Load(outDir);
        var windows = SaeData.Open("induction", loaded).ValidationBatches(16, loaded.Model.Config.NCtx, 2);
        var again = SaeEvaluation.Run(loaded.Model, sae, windows);
        Assert.Equal(held.GetProperty("tokens").GetInt64(), again.Tokens);
        Assert.Equal(held.GetProperty("l0").GetDouble(), again.L0, 9);
        Assert.Equal(held.GetProperty("explained_variance").GetDouble(), again.ExplainedVariance, 9);
        Assert.Equal(held.GetProperty("loss_recovered").GetDouble(), again.LossRecovered, 9);
        Assert.Equal(held.GetProperty("dead").GetInt32(), again.Dead);

        // every feature the report shows has contexts whose peak is its strongest activation, and is embedded with its histogram
        string html = File.ReadAllText(Path.Combine(outDir, "report.html"));
        foreach (var f in json.GetProperty("features").EnumerateArray())
        {
            int i = f.GetProperty("index").GetInt32();
            Assert.Contains($"id=\"f{i}\"", html);
            var ctx = f.GetProperty("contexts").EnumerateArray().ToList();
            Assert.NotEmpty(ctx);
            Assert.Equal(f.GetProperty("max_activation").GetDouble(), ctx[0].GetProperty("activation").GetDouble(), 4);
            var along = ctx[0].GetProperty("activations").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.Equal(ctx[0].GetProperty("activation").GetDouble(), along[ctx[0].GetProperty("position").GetInt32()], 4);
            Assert.Equal(8, f.GetProperty("promoted").GetArrayLength()); // mlp_out writes to the residual stream
        }
        Directory.Delete(dir, true);
    }

    [Theory]
    [InlineData("topk")]
    [InlineData("relu")]
    public void ConsoleOutputFitsIn80Columns(string architecture)
    {
        var (dir, ckpt) = ModelCheckpoint("sae-verb-width-" + architecture);
        var r = TestPaths.Cli(["sae", "--checkpoint", ckpt, "--hook", "blocks.0.hook_mlp_out", "--architecture", architecture, .. Small]);
        Assert.True(r.Code == 0, r.Err);
        VerbSummaryWidth.AssertFits("sae", r.Out, dir);
        foreach (string part in new[] { "sae: ", "held out (", "explained variance ", "loss recovered ", "zero-ablated ", "features: ", "dense (", "geometry of the ", "coding rate " })
            Assert.Contains(part, r.Out);
        Directory.Delete(dir, true);
    }

    [Theory]
    [InlineData(SaeArchitecture.Relu)]
    [InlineData(SaeArchitecture.TopK)]
    public void PyTorchComputesTheSameFeaturesFromTheSavedFiles(SaeArchitecture arch)
    {
        string dir = TestPaths.TempDir("sae-torch");
        var sae = new SparseAutoencoder(new SaeConfig { DIn = 12, DSae = 40, Architecture = arch, K = 6, HookName = "blocks.0.hook_resid_post" }, Kernels.Reference);
        sae.Initialise(7, 0.6f);
        var rng = new Rng(8);
        for (int i = 0; i < sae.Parameters.Length; i++) sae.Parameters[i] += 0.2f * (float)rng.NextNormal();
        SaeFile.Save(Path.Combine(dir, "sae"), sae, "m");
        const int N = 25;
        var x = new float[N * 12];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextNormal();
        SafeTensorsFile.Write(Path.Combine(dir, "x.safetensors"), [("x", [N, 12], x)], null);
        TestPaths.RunReference("sae", "--dir", Path.Combine(dir, "sae"), "--x", Path.Combine(dir, "x.safetensors"), "--out", Path.Combine(dir, "r.safetensors"));

        var a = new SaeActivations(sae.Config, N);
        sae.Forward(x, N, a);
        var r = SafeTensorsFile.Open(Path.Combine(dir, "r.safetensors"));
        var f = new float[N * 40];
        var xhat = new float[N * 12];
        r.ReadF32("features", f);
        r.ReadF32("reconstruction", xhat);
        for (int i = 0; i < f.Length; i++) Assert.True(Math.Abs(f[i] - a.Features[i]) < 1e-5, $"feature {i}: torch {f[i]}, ours {a.Features[i]}");
        for (int i = 0; i < xhat.Length; i++) Assert.True(Math.Abs(xhat[i] - a.Reconstruction[i]) < 1e-5, $"x̂ {i}: torch {xhat[i]}, ours {a.Reconstruction[i]}");
        if (arch == SaeArchitecture.TopK)
            for (int n = 0; n < N; n++) Assert.True(a.Features.AsSpan(n * 40, 40).ToArray().Count(v => v > 0) <= 6);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void BadInputIsAOneLineError()
    {
        var (dir, ckpt) = ModelCheckpoint("sae-verb-errors");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--hook", "blocks.0.hook_nothing"), 1, "hook point 'blocks.0.hook_nothing' is not in this model");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--hook", "blocks.0.attn.hook_pattern"), 1, "not one vector per token");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--d-sae", "-3"), 2, "--d-sae -3");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--d-sae", "0"), 2, "--d-sae 0: an SAE needs at least 1 feature");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--architecture", "gated"), 2, "--architecture 'gated'");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--architecture", "topk", "--k", "0"), 2, "--k 0");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--architecture", "topk", "--k", "500", "--d-sae", "64"), 2, "d_sae = 64");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--steps", "0"), 2, "--steps 0");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--d-sae", "100000000"), 1, "is too large for d_in 16");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--features", "-3"), 2, "--features -3");
        TestPaths.AssertOneLineError(TestPaths.Cli(["sae", "--checkpoint", ckpt, .. Small, "--lr", "1e30", "--out", Path.Combine(dir, "diverged")]), 1, "diverged");
        Assert.False(Directory.Exists(Path.Combine(dir, "diverged")), "a diverged run left its folder");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--data", Path.Combine(dir, "none.txt")), 1, "none.txt");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--data", Path.Combine(dir, "m.safetensors")), 1, "no tokenizer");
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", ckpt, "--out", ""), 2, "--out is empty");
        File.WriteAllText(Path.Combine(dir, "afile"), "x");
        var sub = TestPaths.Cli("sae", "--checkpoint", ckpt, "--out", Path.Combine(dir, "afile", "sub"));
        TestPaths.AssertOneLineError(sub, 1, "cannot hold the report");
        Assert.DoesNotContain("step", sub.Out); // refused before training, not after
        var (adir, attnOnly) = ModelCheckpoint("sae-verb-attn", attnOnly: true);
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", attnOnly, "--hook", "blocks.0.hook_mlp_out"), 1, "is not in this model");
        var (zdir, zero) = ModelCheckpoint("sae-verb-zero", layers: 0);
        TestPaths.AssertOneLineError(TestPaths.Cli("sae", "--checkpoint", zero), 1, "zero-layer model");
        Assert.False(Directory.Exists(Path.Combine(dir, "m.sae")), "a refused run wrote a folder");
        foreach (var d in new[] { dir, adir, zdir }) Directory.Delete(d, true);
    }
}

using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Model;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Cross-checks against real PyTorch (Debian's python3-torch) running an independent implementation
/// of the same model (python/reference.py):
///  • a checkpoint written by PyTorch loads here, and `eval` gives PyTorch's loss (1e-5 relative) and,
///    with --grads, PyTorch's gradients (max |error| / max |gradient| ≤ 1e-4 per tensor);
///  • a checkpoint written here loads there and gives the same logits.
/// </summary>
public class PyTorchCrossCheckTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public static TheoryData<string> Configs() => new()
    {
        """{"n_layers":0,"d_model":32,"n_heads":1,"d_head":32,"n_ctx":16,"d_vocab":23,"attn_only":true,"normalization_type":"LN","positional_embedding_type":"standard","act_fn":"gelu_new"}""",
        """{"n_layers":0,"d_model":32,"n_heads":1,"d_head":32,"n_ctx":16,"d_vocab":23,"attn_only":true,"normalization_type":null,"positional_embedding_type":"standard","act_fn":"gelu_new"}""",
        """{"n_layers":1,"d_model":32,"n_heads":4,"d_head":8,"n_ctx":16,"d_vocab":23,"attn_only":true,"normalization_type":"LN","positional_embedding_type":"standard","act_fn":"gelu_new"}""",
        """{"n_layers":1,"d_model":32,"n_heads":4,"d_head":8,"n_ctx":16,"d_vocab":23,"attn_only":true,"normalization_type":null,"positional_embedding_type":"shortformer","act_fn":"gelu_new"}""",
        """{"n_layers":1,"d_model":32,"n_heads":2,"d_head":16,"d_mlp":64,"n_ctx":16,"d_vocab":23,"attn_only":false,"normalization_type":"LN","positional_embedding_type":"standard","act_fn":"gelu_new"}""",
        """{"n_layers":1,"d_model":32,"n_heads":2,"d_head":16,"d_mlp":64,"n_ctx":16,"d_vocab":23,"attn_only":false,"normalization_type":null,"positional_embedding_type":"standard","act_fn":"gelu_new"}""",
        """{"n_layers":2,"d_model":48,"n_heads":3,"d_head":16,"n_ctx":20,"d_vocab":31,"attn_only":true,"normalization_type":"LN","positional_embedding_type":"shortformer","act_fn":"gelu_new"}""",
        """{"n_layers":2,"d_model":48,"n_heads":3,"d_head":16,"n_ctx":20,"d_vocab":31,"attn_only":true,"normalization_type":null,"positional_embedding_type":"standard","act_fn":"gelu_new"}""",
        """{"n_layers":2,"d_model":48,"n_heads":3,"d_head":16,"d_mlp":96,"n_ctx":20,"d_vocab":31,"attn_only":false,"normalization_type":"LN","positional_embedding_type":"standard","act_fn":"gelu_new"}""",
        """{"n_layers":2,"d_model":48,"n_heads":3,"d_head":16,"d_mlp":96,"n_ctx":20,"d_vocab":31,"attn_only":false,"normalization_type":null,"positional_embedding_type":"standard","act_fn":"gelu_new"}""",
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void EvalMatchesPyTorchLossAndGradients(string config)
    {
        string dir = TestPaths.TempDir("torch");
        string ckpt = Path.Combine(dir, "torch.safetensors"), data = Path.Combine(dir, "tokens.bin");
        string refJson = Path.Combine(dir, "ref.json"), refGrads = Path.Combine(dir, "ref_grads.safetensors");
        int vocab = JsonDocument.Parse(config).RootElement.GetProperty("d_vocab").GetInt32();
        TestPaths.RunReference("init", "--config", config, "--seed", "3", "--out", ckpt);
        TestPaths.RunReference("tokens", "--vocab", vocab.ToString(), "--count", "700", "--seed", "4", "--out", data);
        TestPaths.RunReference("eval", "--checkpoint", ckpt, "--data", data, "--out", refJson, "--grads", refGrads);

        string ourGrads = Path.Combine(dir, "our_grads.safetensors");
        var (code, stdout, stderr) = TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", data, "--grads", ourGrads, "--json", "--batch-size", "5");
        Assert.True(code == 0, stderr);
        var ours = JsonDocument.Parse(stdout).RootElement;
        var theirs = JsonDocument.Parse(File.ReadAllText(refJson)).RootElement;
        double lossOurs = ours.GetProperty("loss").GetDouble(), lossTheirs = theirs.GetProperty("loss").GetDouble();
        Assert.Equal(theirs.GetProperty("windows").GetInt32(), ours.GetProperty("windows").GetInt32());
        Assert.Equal(theirs.GetProperty("tokens").GetInt32(), ours.GetProperty("tokens").GetInt32());
        Assert.True(Math.Abs(lossOurs - lossTheirs) <= 1e-5 * Math.Abs(lossTheirs), $"loss {lossOurs:R} vs PyTorch {lossTheirs:R}");
        double worstGrad = 0;

        var g1 = SafeTensorsFile.Open(ourGrads);
        var g2 = SafeTensorsFile.Open(refGrads);
        Assert.Equal(g2.Entries.Keys.Order(), g1.Entries.Keys.Order());
        var ourAll = new Dictionary<string, float[]>();
        var refAll = new Dictionary<string, float[]>();
        foreach (var (name, e) in g2.Entries)
        {
            Assert.Equal(e.Shape, g1.Entries[name].Shape);
            g1.ReadF32(name, ourAll[name] = new float[e.Count]);
            g2.ReadF32(name, refAll[name] = new float[e.Count]);
        }
        float largest = refAll.Values.Max(v => v.Max(Math.Abs));
        foreach (var name in refAll.Keys)
        {
            float[] a = ourAll[name], b = refAll[name];
            float maxAbs = 0, maxErr = 0;
            for (int i = 0; i < a.Length; i++) { maxAbs = Math.Max(maxAbs, Math.Abs(b[i])); maxErr = Math.Max(maxErr, Math.Abs(a[i] - b[i])); }
            // b_K's gradient is exactly 0 in exact arithmetic (softmax ignores a score shift shared by every key,
            // and q·b_K is such a shift); both sides hold only rounding noise there, so compare it to the model's scale.
            if (maxAbs < 1e-7f * largest)
            {
                Assert.True(maxErr <= 1e-6f * largest, $"{name}: PyTorch's gradient is ~0 (max {maxAbs:G3}) but ours differs by {maxErr:G3}");
                continue;
            }
            Assert.True(maxErr / maxAbs <= 1e-4, $"{name}: max |error| {maxErr:G3} over max |gradient| {maxAbs:G3} = {maxErr / maxAbs:G3}");
            worstGrad = Math.Max(worstGrad, maxErr / maxAbs);
        }
        output.WriteLine($"loss {lossOurs:F7} vs PyTorch {lossTheirs:F7}: relative error {Math.Abs(lossOurs - lossTheirs) / lossTheirs:E2}; " +
            $"worst gradient error / max |gradient| over {refAll.Count} tensors: {worstGrad:E2}");
        Directory.Delete(dir, true);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void CheckpointWrittenHereGivesTheSameLogitsInPyTorch(string config)
    {
        string dir = TestPaths.TempDir("torch-logits");
        var cfg = ModelConfig.FromJson(config);
        var model = GptModel.Create(cfg, seed: 11);
        var rng = new Rng(5);
        foreach (var t in model.Params.Tensors) // move biases and gains off 0 and 1 so they matter
            if (!t.Name.Contains(".W_")) for (int i = 0; i < t.Length; i++) t[i] += (float)(0.2 * rng.NextNormal());
        string ckpt = Path.Combine(dir, "ours.safetensors"), data = Path.Combine(dir, "tokens.bin"), logits = Path.Combine(dir, "logits.safetensors");
        Checkpoint.Save(ckpt, model, tokenizerJson: null);
        var tokens = new int[cfg.NCtx];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.NextInt(cfg.DVocab);
        TokenFile.WriteBin(data, tokens);
        TestPaths.RunReference("logits", "--checkpoint", ckpt, "--data", data, "--out", logits);

        model.Forward(tokens, ReadOnlySpan<int>.Empty, 1, cfg.NCtx);
        var ours = model.Logits.ToArray();
        var f = SafeTensorsFile.Open(logits);
        Assert.Equal(new[] { cfg.NCtx, cfg.DVocab }, f.Entries["logits"].Shape);
        var theirs = new float[ours.Length];
        f.ReadF32("logits", theirs);
        float maxAbs = theirs.Max(Math.Abs), maxErr = 0;
        for (int i = 0; i < ours.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(ours[i] - theirs[i]));
        Assert.True(maxErr <= 1e-5f * Math.Max(1f, maxAbs), $"logits differ from PyTorch by up to {maxErr:G3} (scale {maxAbs:G3})");
        output.WriteLine($"logits: max |difference| {maxErr:E2} at max |logit| {maxAbs:F3}");
        Directory.Delete(dir, true);
    }
}

using System.Diagnostics;
using MiniGpt.Checkpoints;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt.Tests;

/// <summary>
/// The full GPT-2 small shape (12 layers, 12 heads, d_model 768, d_mlp 3072, n_ctx 1024, 50,257 tokens: 124 M
/// parameters), written by PyTorch with random weights in both published layouts (about 0.5 GB each, removed
/// afterwards): loading either gives PyTorch's logits, and the two loads are the same model. The slow test of
/// the suite (about 15 s, most of it PyTorch writing and running the model on the reference BLAS).
/// </summary>
public class Gpt2SmallShapeTests(ITestOutputHelper output)
{
    private const string Gpt2Small = """{"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024, "vocab_size": 50257}""";

    [Fact]
    public void Gpt2SmallShapeLoadsFromBothLayoutsWithPyTorchsLogits()
    {
        string dir = TestPaths.TempDir("gpt2-small");
        try
        {
            string hf = Path.Combine(dir, "gpt2"), bin = Path.Combine(dir, "gpt2_124M.bin");
            string data = Path.Combine(dir, "tokens.bin"), refLogits = Path.Combine(dir, "logits.safetensors");
            TestPaths.RunReference("gpt2hf", "--config", Gpt2Small, "--seed", "11", "--out", hf, "--prefix");
            TestPaths.RunReference("gpt2llmc", "--dir", hf, "--out", bin, "--padded-vocab", "50304");
            TestPaths.RunReference("tokens", "--vocab", "50257", "--count", "32", "--seed", "12", "--out", data);
            TestPaths.RunReference("gpt2logits", "--dir", hf, "--data", data, "--out", refLogits);
            int[] tokens = Data.TokenFile.ReadBin(data, 50257);
            var theirs = new float[tokens.Length * 50257];
            SafeTensorsFile.Open(refLogits).ReadF32("logits", theirs);

            float[]? first = null;
            foreach (string path in new[] { hf, bin })
            {
                var clock = Stopwatch.StartNew();
                var loaded = Checkpoint.Load(path);
                double seconds = clock.Elapsed.TotalSeconds;
                var c = loaded.Model.Config;
                Assert.Equal((12, 12, 768, 64, 3072, 1024, 50257), (c.NLayers, c.NHeads, c.DModel, c.DHead, c.DMlp, c.NCtx, c.DVocab));
                Assert.Equal(124_439_808, loaded.Model.ParameterCount - (long)c.DModel * c.DVocab - c.DVocab); // GPT-2 small's count: the tied W_U and the zero b_U are not its own
                loaded.Model.Forward(tokens, default, 1, tokens.Length);
                var ours = loaded.Model.Logits.ToArray();
                double worst = 0;
                for (int i = 0; i < ours.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - theirs[i]));
                output.WriteLine($"{Path.GetFileName(path)}: loaded in {seconds:0.00} s, largest logit difference from PyTorch {worst:G3}");
                Assert.True(worst < 1e-4, $"{path}: largest logit difference {worst:G3}");
                if (first == null) first = ours;
                else Assert.Equal(first, ours); // the same model from either file, bit for bit
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}

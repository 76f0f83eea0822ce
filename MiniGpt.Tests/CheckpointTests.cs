using System.Buffers.Binary;
using System.Text;
using MiniGpt.Checkpoints;
using MiniGpt.Model;
using Xunit;

namespace MiniGpt.Tests;

public class CheckpointTests
{
    private static GptModel Small(bool ln = true, bool attnOnly = false) => GptModel.Create(new ModelConfig
    {
        NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 8, DVocab = 13, AttnOnly = attnOnly,
        NormalizationType = ln ? "LN" : null,
    }, seed: 5);

    [Fact]
    public void RoundTripKeepsEveryParameterNameShapeAndBit()
    {
        string dir = TestPaths.TempDir("ckpt");
        var m = Small();
        string path = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(path, m, "{\"type\":\"char\",\"chars\":\"abc\"}");
        var loaded = Checkpoint.Load(path);
        Assert.Equal(m.Config with { InitRange = m.Config.EffectiveInitRange }, loaded.Model.Config); // the file states the init used
        Assert.Equal("{\"type\":\"char\",\"chars\":\"abc\"}", loaded.TokenizerJson);
        Assert.Equal(m.Params.Tensors.Select(t => t.Name), loaded.Model.Params.Tensors.Select(t => t.Name));
        Assert.True(m.Params.Buffer.AsSpan().SequenceEqual(loaded.Model.Params.Buffer));
        // TransformerLens names and shapes
        var f = SafeTensorsFile.Open(path);
        Assert.Equal(new[] { 13, 16 }, f.Entries["embed.W_E"].Shape);
        Assert.Equal(new[] { 2, 16, 8 }, f.Entries["blocks.1.attn.W_Q"].Shape);
        Assert.Equal(new[] { 2, 8, 16 }, f.Entries["blocks.0.attn.W_O"].Shape);
        Assert.Equal(new[] { 16, 32 }, f.Entries["blocks.0.mlp.W_in"].Shape);
        Assert.Equal(new[] { 16, 13 }, f.Entries["unembed.W_U"].Shape);
        Assert.Contains("\"n_layers\":2", f.Metadata["config"]);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void LayerNormAndMlpTensorsAreAbsentWhenTheConfigHasNone()
    {
        var names = Small(ln: false, attnOnly: true).Params.Tensors.Select(t => t.Name).ToList();
        Assert.DoesNotContain(names, n => n.Contains("ln") || n.Contains("mlp"));
        Assert.Contains("blocks.1.attn.b_O", names);
    }

    [Fact]
    public void TransformerLensBuffersAreIgnoredAndForeignTensorsRejected()
    {
        string dir = TestPaths.TempDir("ckpt-tl");
        var m = Small();
        var tensors = Checkpoint.Tensors(m.Params, "");
        tensors.Add(("blocks.0.attn.mask", new[] { 8, 8 }, new float[64]));
        tensors.Add(("blocks.0.attn.IGNORE", Array.Empty<int>(), new float[1]));
        string ok = Path.Combine(dir, "tl.safetensors");
        SafeTensorsFile.Write(ok, tensors, new Dictionary<string, string> { ["config"] = m.Config.ToJson() });
        Assert.True(m.Params.Buffer.AsSpan().SequenceEqual(Checkpoint.Load(ok).Model.Params.Buffer));

        tensors.Add(("blocks.0.attn.W_X", new[] { 2 }, new float[2]));
        string bad = Path.Combine(dir, "bad.safetensors");
        SafeTensorsFile.Write(bad, tensors, new Dictionary<string, string> { ["config"] = m.Config.ToJson() });
        var e = Assert.Throws<UserError>(() => Checkpoint.Load(bad));
        Assert.Contains("blocks.0.attn.W_X", e.Message);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void DamagedFilesGiveUserErrors()
    {
        string dir = TestPaths.TempDir("ckpt-bad");
        var m = Small();
        string path = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(path, m, null);
        byte[] good = File.ReadAllBytes(path);

        void Expect(byte[] bytes, string fragment)
        {
            string p = Path.Combine(dir, "x.safetensors");
            File.WriteAllBytes(p, bytes);
            var e = Assert.Throws<UserError>(() => Checkpoint.Load(p));
            Assert.Contains(fragment, e.Message);
        }
        Expect(good[..5], "too short");
        Expect(good[..(good.Length - 4)], "outside");                      // truncated data
        var huge = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue / 2); // header length past the end
        Expect(huge, "header claims");
        Expect(Encoding.UTF8.GetBytes("just some text file, not a checkpoint"), "header claims");

        // a config that disagrees with the tensors
        var wrongCfg = m.Config with { DModel = 32, DHead = 16 };
        string mismatch = Path.Combine(dir, "mismatch.safetensors");
        SafeTensorsFile.Write(mismatch, Checkpoint.Tensors(m.Params, ""), new Dictionary<string, string> { ["config"] = wrongCfg.ToJson() });
        Assert.Contains("but the config needs", Assert.Throws<UserError>(() => Checkpoint.Load(mismatch)).Message);

        // a config claiming far more layers than the file holds is refused before its layout is built (found by the fuzz test)
        string deep = Path.Combine(dir, "deep.safetensors");
        SafeTensorsFile.Write(deep, Checkpoint.Tensors(m.Params, ""), new Dictionary<string, string> { ["config"] = (m.Config with { NLayers = 100_000 }).ToJson() });
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Contains("claims 100000 layers", Assert.Throws<UserError>(() => Checkpoint.Load(deep)).Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 8 << 20, "the deep config was laid out before it was refused");

        // a value quoted from the file stays on one line (found by the fuzz test: act_fn "gelu\nnew")
        string odd = Path.Combine(dir, "odd.safetensors");
        SafeTensorsFile.Write(odd, Checkpoint.Tensors(m.Params, ""), new Dictionary<string, string> { ["config"] = (m.Config with { ActFn = "gelu\nnew\u001b[2J" }).ToJson() });
        var oneLine = Assert.Throws<UserError>(() => Checkpoint.Load(odd)).Message;
        Assert.Contains("act_fn 'gelu\\nnew\\u001b[2J'", oneLine);
        Assert.DoesNotContain('\n', oneLine);

        string noCfg = Path.Combine(dir, "nocfg.safetensors");
        SafeTensorsFile.Write(noCfg, Checkpoint.Tensors(m.Params, ""), null);
        Assert.Contains("no 'config'", Assert.Throws<UserError>(() => Checkpoint.Load(noCfg)).Message);
        Directory.Delete(dir, true);
    }
}

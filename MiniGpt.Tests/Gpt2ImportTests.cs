using System.Text.Json.Nodes;
using MiniGpt.Checkpoints;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>GPT-2 in the Hugging Face layout, written by PyTorch, loads with PyTorch's logits; broken folders are one-line errors.</summary>
public class Gpt2ImportTests
{
    private const string Small = """{"n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": 24, "vocab_size": 53}""";

    private static float[] Logits(Checkpoint.Loaded loaded, int[] tokens)
    {
        loaded.Model.Forward(tokens, default, 1, tokens.Length);
        return loaded.Model.Logits.ToArray();
    }

    /// <summary>Our logits against PyTorch's (written by reference.py gpt2logits), elementwise within 1e-4.</summary>
    private static void AssertNearReference(float[] ours, string refLogits)
    {
        var theirs = new float[ours.Length];
        SafeTensorsFile.Open(refLogits).ReadF32("logits", theirs);
        double worst = 0;
        for (int i = 0; i < theirs.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - theirs[i]));
        Assert.True(worst < 1e-4, $"largest logit difference {worst:G3}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // names under transformers' "transformer." prefix, as GPT2LMHeadModel saves them
    public void HuggingFaceGpt2GivesPyTorchsLogits(bool prefix)
    {
        string dir = TestPaths.TempDir("gpt2-hf");
        string hf = Path.Combine(dir, "gpt2"), data = Path.Combine(dir, "tokens.bin"), refLogits = Path.Combine(dir, "logits.safetensors");
        TestPaths.RunReference(["gpt2hf", "--config", Small, "--seed", "5", "--out", hf, .. prefix ? new[] { "--prefix" } : []]);
        TestPaths.RunReference("tokens", "--vocab", "53", "--count", "24", "--seed", "6", "--out", data);
        TestPaths.RunReference("gpt2logits", "--dir", hf, "--data", data, "--out", refLogits);

        var loaded = Checkpoint.Load(hf); // the folder itself, as `eval --checkpoint DIR` gives it
        var c = loaded.Model.Config;
        Assert.Equal((2, 4, 32, 8, 128, 24, 53), (c.NLayers, c.NHeads, c.DModel, c.DHead, c.DMlp, c.NCtx, c.DVocab));
        int[] tokens = Data.TokenFile.ReadBin(data, 53);
        var ours = Logits(loaded, tokens);
        AssertNearReference(ours, refLogits);
        // and the model.safetensors path beside its config.json loads the same
        Assert.Equal(ours, Logits(Checkpoint.Load(Path.Combine(hf, "model.safetensors")), tokens));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ABrokenFolderIsAOneLineError()
    {
        string dir = TestPaths.TempDir("gpt2-hf-bad");
        string hf = Path.Combine(dir, "gpt2");
        TestPaths.RunReference("gpt2hf", "--config", Small, "--seed", "5", "--out", hf);
        string cfgPath = Path.Combine(hf, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();

        // config.json claims a wider model than the tensors hold
        var wide = cfg.DeepClone().AsObject(); wide["n_embd"] = 64;
        File.WriteAllText(cfgPath, wide.ToJsonString());
        var r = TestPaths.Cli("eval", "--checkpoint", hf, "--data", "induction");
        TestPaths.AssertOneLineError(r, 1, "the file and its config.json disagree");

        // a layer more than the file has
        var deep = cfg.DeepClone().AsObject(); deep["n_layer"] = 3;
        File.WriteAllText(cfgPath, deep.ToJsonString());
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", hf, "--data", "induction"), 1, "has no tensor h.2.ln_1.weight");

        // an activation MiniGpt does not run
        var relu = cfg.DeepClone().AsObject(); relu["activation_function"] = "relu";
        File.WriteAllText(cfgPath, relu.ToJsonString());
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", hf, "--data", "induction"), 1, "activation_function 'relu'");

        File.WriteAllText(cfgPath, "{ not json");
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", hf, "--data", "induction"), 1, "is not a GPT-2 config");
        File.Delete(cfgPath);
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", Path.Combine(hf, "model.safetensors"), "--data", "induction"), 1, "no config.json beside it");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void LlmcBinGivesPyTorchsLogitsAndAWrongFileIsAOneLineError()
    {
        string dir = TestPaths.TempDir("gpt2-llmc");
        string hf = Path.Combine(dir, "gpt2"), bin = Path.Combine(dir, "gpt2_small.bin"), data = Path.Combine(dir, "tokens.bin"), refLogits = Path.Combine(dir, "logits.safetensors");
        TestPaths.RunReference("gpt2hf", "--config", Small, "--seed", "7", "--out", hf);
        TestPaths.RunReference("gpt2llmc", "--dir", hf, "--out", bin, "--padded-vocab", "64"); // 53 padded to 64, as 50257 to 50304
        TestPaths.RunReference("tokens", "--vocab", "53", "--count", "24", "--seed", "8", "--out", data);
        TestPaths.RunReference("gpt2logits", "--dir", hf, "--data", data, "--out", refLogits);

        var loaded = Checkpoint.Load(bin);
        Assert.Equal(53, loaded.Model.Config.DVocab); // the padding rows dropped
        int[] tokens = Data.TokenFile.ReadBin(data, 53);
        var ours = Logits(loaded, tokens);
        AssertNearReference(ours, refLogits);
        // and the same model read from either layout is the same model
        Assert.Equal(Logits(Checkpoint.Load(hf), tokens), ours);

        byte[] all = File.ReadAllBytes(bin);
        string truncated = Path.Combine(dir, "truncated.bin");
        File.WriteAllBytes(truncated, all[..(all.Length - 100)]);
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", truncated, "--data", "induction"), 1, "truncated");
        string v5 = Path.Combine(dir, "bf16.bin");
        var copy = (byte[])all.Clone();
        copy[4] = 5; // version 5: llm.c's bfloat16 export
        File.WriteAllBytes(v5, copy);
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", v5, "--data", "induction"), 1, "version 5");
        var huge = (byte[])all.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(huge.AsSpan(16), 100_000); // 100,000 layers claimed
        string hugePath = Path.Combine(dir, "huge.bin");
        File.WriteAllBytes(hugePath, huge);
        long before = GC.GetAllocatedBytesForCurrentThread();
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", hugePath, "--data", "induction"), 1, "its header implies");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 8 << 20, "the claimed model was allocated before the file was checked");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ConvertRoundTripsThroughMiniGptAndBackToTheHuggingFaceLayout()
    {
        string dir = TestPaths.TempDir("gpt2-convert");
        string hf = Path.Combine(dir, "gpt2"), mine = Path.Combine(dir, "mine.safetensors"), back = Path.Combine(dir, "back");
        string data = Path.Combine(dir, "tokens.bin"), refLogits = Path.Combine(dir, "logits.safetensors");
        TestPaths.RunReference("gpt2hf", "--config", Small, "--seed", "9", "--out", hf);
        TestPaths.RunReference("tokens", "--vocab", "53", "--count", "24", "--seed", "10", "--out", data);
        int[] tokens = Data.TokenFile.ReadBin(data, 53);
        var original = Logits(Checkpoint.Load(hf), tokens);

        var r1 = TestPaths.Cli("convert", "--checkpoint", hf, "--out", mine);
        Assert.True(r1.Code == 0, r1.Err);
        Assert.Equal(original, Logits(Checkpoint.Load(mine), tokens));
        var r2 = TestPaths.Cli("convert", "--checkpoint", mine, "--to", "hf", "--out", back);
        Assert.True(r2.Code == 0, r2.Err);
        // the exported folder, read by PyTorch's independent forward in transformers' layout, gives our logits
        TestPaths.RunReference("gpt2logits", "--dir", back, "--data", data, "--out", refLogits);
        AssertNearReference(original, refLogits);
        Assert.Equal(original, Logits(Checkpoint.Load(back), tokens)); // and back again, bit for bit

        TestPaths.AssertOneLineError(TestPaths.Cli("convert", "--checkpoint", hf, "--out", mine), 1, "exists");
        TestPaths.AssertOneLineError(TestPaths.Cli("convert", "--checkpoint", hf, "--out", Path.Combine(dir, "x"), "--to", "onnx"), 2, "--to 'onnx'");
        // a model GPT-2 cannot hold: attention-only, untied
        var toy = Model.GptModel.Create(new Model.ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, AttnOnly = true, NCtx = 8, DVocab = 12 }, 1);
        string toyPath = Path.Combine(dir, "toy.safetensors");
        Checkpoint.Save(toyPath, toy, null);
        TestPaths.AssertOneLineError(TestPaths.Cli("convert", "--checkpoint", toyPath, "--to", "hf", "--out", Path.Combine(dir, "toy")), 1, "attention-only");
        Assert.False(Directory.Exists(Path.Combine(dir, "toy")), "a refused export wrote a folder");
        Directory.Delete(dir, true);
    }
}

using System.Security.Cryptography;
using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// train --init-from F (fine-tuning): F's weights, shape and tokenizer with a fresh optimizer; a GPT-2 trains tied as
/// one tensor; the run records F; options that disagree with F are one-line errors; and fine-tuning lowers the loss.
/// </summary>
public class InitFromTests
{
    /// <summary>A small model with MLPs on the induction task (64 token ids), or on text with the char tokenizer.</summary>
    private static TrainOptions Tiny(string outPath, string data = "induction") => new()
    {
        Data = data, Model = new() { NLayers = 2, DModel = 32, NHeads = 2, NCtx = 16, AttnOnly = false }, BatchSize = 8, Steps = 10,
        WarmupSteps = 2, EvalInterval = 10, EvalBatches = 2, LogInterval = 10, CheckpointInterval = 1000, Out = outPath, Seed = 42,
    };

    /// <summary>A fine-tuning run's options: no shape (it comes from F), a seed of its own.</summary>
    private static TrainOptions FineTune(string from, string outPath, string data = "induction", int steps = 8) => new()
    {
        InitFrom = from, Data = data, BatchSize = 8, Steps = steps, WarmupSteps = 2, EvalInterval = 4, EvalBatches = 2, LogInterval = 4,
        CheckpointInterval = 1000, Out = outPath, Seed = 9,
    };

    /// <summary>A trained MiniGpt checkpoint to start from (trained 10 steps, so it is no fresh init).</summary>
    private static string Source(string dir, string data = "induction")
    {
        string src = Path.Combine(dir, "source.safetensors");
        Trainer.Start(Tiny(src, data)).Run(_ => { });
        return src;
    }

    private static string Sha256(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    [Fact]
    public void StartsFromTheCheckpointsWeightsWithAFreshOptimizerAndStepZero()
    {
        string dir = TestPaths.TempDir("init-from");
        string src = Source(dir);
        var t = Trainer.Start(FineTune(src, Path.Combine(dir, "ft.safetensors")));
        var source = Checkpoint.Load(src).Model;

        Assert.Equal(0, t.Optimizer.Step);
        Assert.Equal(source.Config, t.Model.Config);
        Assert.True(t.Model.Params.Buffer.AsSpan().SequenceEqual(source.Params.Buffer), "the weights are not the checkpoint's");
        Assert.True(t.Optimizer.M.Buffer.All(x => x == 0) && t.Optimizer.V.Buffer.All(x => x == 0), "the Adam moments are not fresh");
        var s = t.Options.InitSource!;
        Assert.Equal(("minigpt", Sha256(src), new FileInfo(src).Length, Path.GetFullPath(src), "10"), (s.Format, s.Sha256, s.Bytes, s.FullPath, s.Step));

        // the first step's loss, before its update, is the source model's loss on that batch: the weights really are F's
        var o = t.Options;
        float loss = t.Step();
        int B = o.BatchSize, T = t.Model.Config.NCtx;
        Assert.Equal(source.Forward(t.LastInputs, t.LastTargets, B, T), loss);
        // the schedule starts at its first step, and the data order is that of a new run with the same seed
        Assert.Equal(LrSchedule.At(0, o.Lr, o.MinLr, o.WarmupSteps, o.Steps), t.LastLr);
        var fresh = Trainer.Start(Tiny(Path.Combine(dir, "fresh.safetensors")) with { Seed = 9 });
        fresh.Step();
        Assert.True(fresh.LastInputs.SequenceEqual(t.LastInputs), "the data order is not a fresh run's");
        Assert.Equal(1, t.Optimizer.Step);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void AGpt2WrittenByPyTorchTrainsTiedWithTheSummedGradient()
    {
        string dir = TestPaths.TempDir("init-from-gpt2");
        string hf = Path.Combine(dir, "gpt2");
        TestPaths.RunReference("gpt2hf", "--config", """{"n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": 24, "vocab_size": 53}""", "--seed", "5", "--out", hf);
        // grad clip off: the gradient the optimizer sees is then exactly the folded one
        var t = Trainer.Start(FineTune(hf, Path.Combine(dir, "ft.safetensors")) with { TieEmbeddings = true, GradClip = 0, BatchSize = 4 });
        Assert.Equal("hf", t.Options.InitSource!.Format);
        Assert.Equal(Sha256(Path.Combine(hf, "config.json")), t.Options.InitSource.ConfigSha256);
        var c = t.Model.Config;
        int V = c.DVocab, D = c.DModel, B = t.Options.BatchSize, T = c.NCtx;

        // by hand: the untied model's two gradients on the same batch, gE [V, D] + gUᵀ
        var byHand = Checkpoint.Load(hf).Model;
        t.Step();
        byHand.Forward(t.LastInputs, t.LastTargets, B, T);
        byHand.ZeroGrad();
        byHand.Backward(1f / (B * T));
        var gE = byHand.Grads["embed.W_E"].Span; var gU = byHand.Grads["unembed.W_U"].Span;
        var sum = new float[V * D];
        for (int v = 0; v < V; v++)
            for (int d = 0; d < D; d++) sum[v * D + d] = gE[v * D + d] + gU[d * V + v];
        Assert.True(t.Model.Grads["embed.W_E"].Span.SequenceEqual(sum), "W_E's gradient is not gE + gUᵀ");
        Assert.Contains(sum, x => x != 0);
        // the one tensor's Adam moment is (1 − β1)·that sum after the first step; W_U's and b_U's stay 0
        float c1 = 1f - t.Options.Beta1;
        Assert.True(t.Optimizer.M["embed.W_E"].Span.SequenceEqual(sum.Select(g => c1 * g).ToArray()), "the moment of W_E is not that of the summed gradient");
        Assert.True(t.Optimizer.M["unembed.W_U"].Span.ToArray().All(x => x == 0));
        Assert.True(t.Optimizer.M["unembed.b_U"].Span.ToArray().All(x => x == 0));

        var wE0 = t.Model.Params["embed.W_E"].Span.ToArray();
        for (int i = 0; i < 5; i++) t.Step();
        Assert.False(t.Model.Params["embed.W_E"].Span.SequenceEqual(wE0), "W_E did not train");
        Assert.True(Trainer.HasTiedEmbeddings(t.Model), "W_U is no longer W_Eᵀ bit for bit");
        Assert.Null(HuggingFaceGpt2.WhyNotGpt2(t.Model)); // still GPT-2's form (b_U = 0): convert --to hf writes it
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TheRunFolderRecordsTheSourceAndResumesWithoutIt()
    {
        string dir = TestPaths.TempDir("init-from-run");
        string src = Source(dir, TestPaths.Shakespeare); // char tokenizer: the fine-tune encodes the text with it
        string root = Path.Combine(dir, "runs");
        string[] common = ["--data", TestPaths.Shakespeare, "--batch-size", "4", "--eval-batches", "2", "--threads", "2"];
        var r = TestPaths.Cli(["train", "--init-from", src, "--runs-dir", root, "--name", "ft", "--steps", "3", .. common]);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("init from: ", r.Out);
        Assert.Contains("untied embeddings, as in the checkpoint", r.Out);
        var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "ft", "config.json"))).RootElement;
        var from = cfg.GetProperty("init_from");
        Assert.Equal(src, from.GetProperty("path").GetString());
        Assert.Equal(Path.GetFullPath(src), from.GetProperty("full_path").GetString());
        Assert.Equal("minigpt", from.GetProperty("format").GetString());
        Assert.Equal(new FileInfo(src).Length, from.GetProperty("bytes").GetInt64());
        Assert.Equal(Sha256(src), from.GetProperty("sha256").GetString());
        Assert.Equal("char", cfg.GetProperty("train").GetProperty("tokenizer").GetString());
        // and every checkpoint of the run carries it in its metadata
        var meta = SafeTensorsFile.Open(Path.Combine(root, "ft", "model.safetensors")).Metadata;
        Assert.Equal(Sha256(src), JsonDocument.Parse(meta["init_from"]).RootElement.GetProperty("sha256").GetString());

        // stopped after 2 of 6 steps and resumed with F gone, the run ends bit for bit as one never stopped
        var straight = Trainer.Start(FineTune(src, Path.Combine(dir, "a.safetensors"), TestPaths.Shakespeare, steps: 6));
        straight.Run(_ => { });
        var first = Trainer.Start(FineTune(src, Path.Combine(dir, "b.safetensors"), TestPaths.Shakespeare, steps: 6));
        first.Run(_ => { }, () => first.Optimizer.Step >= 2);
        Assert.Equal(2, first.Optimizer.Step);
        File.Move(src, src + ".away");
        var resumed = Trainer.Resume(Path.Combine(dir, "b.safetensors"));
        Assert.Equal(first.Options.InitSource, resumed.Options.InitSource);
        resumed.Run(_ => { });
        Assert.True(straight.Model.Params.Buffer.AsSpan().SequenceEqual(resumed.Model.Params.Buffer), "the resumed fine-tune differs from the straight one");
        // and through the CLI: the run folder resumes (here: already at its last step) without F
        var again = TestPaths.Cli("train", "--resume", Path.Combine(root, "ft"), "--threads", "2");
        Assert.True(again.Code == 0, again.Err);
        Assert.Contains("resuming", again.Out);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void OptionsThatDisagreeWithTheCheckpointAreOneLineErrors()
    {
        string dir = TestPaths.TempDir("init-from-errors");
        string src = Source(dir, TestPaths.Shakespeare);
        string[] T(params string[] more) => ["train", "--init-from", src, "--steps", "1", "--batch-size", "2", "--eval-batches", "1", "--threads", "2",
            "--out", Path.Combine(dir, "ft.safetensors"), "--overwrite", .. more];
        TestPaths.AssertOneLineError(TestPaths.Cli(T("--d-model", "64")), 2, "--d-model 64 disagrees with");
        TestPaths.AssertOneLineError(TestPaths.Cli(T("--attn-only")), 2, "whose attn_only is false");
        TestPaths.AssertOneLineError(TestPaths.Cli(T("--n-ctx", "17")), 2, "--n-ctx 17 is longer than the n_ctx 16");
        TestPaths.AssertOneLineError(TestPaths.Cli(T("--tokenizer", "gpt2")), 2, "whose tokenizer is char");
        TestPaths.AssertOneLineError(TestPaths.Cli(T("--tie-embeddings")), 2, "is not W_Eᵀ");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--init-from", src, "--resume", dir), 2, "give one of them");
        var missing = T();
        missing[2] = Path.Combine(dir, "missing.safetensors");
        TestPaths.AssertOneLineError(TestPaths.Cli(missing), 1, "does not exist");
        // options that agree are fine, and so is a shorter context (W_pos cropped)
        var ok = TestPaths.Cli(T("--d-model", "32", "--n-layers", "2", "--n-ctx", "8", "--data", TestPaths.Shakespeare));
        Assert.True(ok.Code == 0, ok.Err);
        Assert.Contains("n_ctx 8,", ok.Out);
        Assert.Contains("bits/byte", ok.Out); // text encoded with F's tokenizer: bytes per token are known
        // data F's tokenizer did not encode (the induction task) has no bits per byte, though F has a tokenizer
        var induction = TestPaths.Cli(T("--data", "induction"));
        Assert.True(induction.Code == 0, induction.Err);
        Assert.Contains("val ", induction.Out);
        Assert.DoesNotContain("bits/byte", induction.Out);
        var empty = T();
        empty[2] = "";
        TestPaths.AssertOneLineError(TestPaths.Cli(empty), 2, "--init-from is empty");

        // a prepared folder must use the checkpoint's tokenizer: the whole text's char set is, a part's is not
        string part = Path.Combine(dir, "part.txt");
        File.WriteAllText(part, File.ReadAllText(TestPaths.Shakespeare)[..5000]);
        Assert.Equal(0, TestPaths.Cli("prepare", "--data", part, "--tokenizer", "char", "--out", Path.Combine(dir, "prep-part")).Code);
        TestPaths.AssertOneLineError(TestPaths.Cli(T("--data", Path.Combine(dir, "prep-part"))), 1, "was prepared with a different char vocabulary");
        Assert.Equal(0, TestPaths.Cli("prepare", "--data", TestPaths.Shakespeare, "--tokenizer", "char", "--out", Path.Combine(dir, "prep")).Code);
        var prepared = TestPaths.Cli(T("--data", Path.Combine(dir, "prep")));
        Assert.True(prepared.Code == 0, prepared.Err);
        Directory.Delete(dir, true);
    }

    /// <summary>
    /// The acceptance test, small: a random GPT-2-shaped model (GPT-2's 50,257 ids) written by PyTorch,
    /// converted to MiniGpt's checkpoint, fine-tuned on tiny-shakespeare from the command line (gpt2 tokenizer from F).
    /// </summary>
    [Fact]
    public void FineTuningAConvertedGpt2LowersTheValidationLoss()
    {
        string dir = TestPaths.TempDir("init-from-shakespeare");
        string hf = Path.Combine(dir, "gpt2"), conv = Path.Combine(dir, "gpt2.safetensors");
        TestPaths.RunReference("gpt2hf", "--config", """{"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 64, "vocab_size": 50257}""", "--seed", "3", "--out", hf);
        Assert.Equal(0, TestPaths.Cli("convert", "--checkpoint", hf, "--out", conv).Code);
        var r = TestPaths.Cli("train", "--init-from", conv, "--data", TestPaths.Shakespeare, "--steps", "30", "--batch-size", "4", "--n-ctx", "32",
            "--lr", "3e-3", "--warmup-steps", "5", "--eval-interval", "30", "--eval-batches", "4", "--runs-dir", Path.Combine(dir, "runs"), "--name", "ft", "--threads", "2");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("tied embeddings: W_U = W_Eᵀ", r.Out);
        var val = File.ReadAllLines(Path.Combine(dir, "runs", "ft", "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(l => l.GetProperty("val_loss").ValueKind == JsonValueKind.Number).Select(l => l.GetProperty("val_loss").GetDouble()).ToList();
        Assert.Equal(2, val.Count); // steps 0 and 30
        Assert.True(val[0] > 10.5, $"a random GPT-2 should start near ln 50257 = 10.8, got {val[0]}");
        Assert.True(val[1] < val[0] - 2, $"validation loss {val[0]:F3} → {val[1]:F3}");
        // the fine-tuned model is still GPT-2-shaped (tied, no b_U): it goes back to the Hugging Face layout
        var back = TestPaths.Cli("convert", "--checkpoint", Path.Combine(dir, "runs", "ft", "model.safetensors"), "--out", Path.Combine(dir, "back"), "--to", "hf");
        Assert.True(back.Code == 0, back.Err);
        Directory.Delete(dir, true);
    }
}

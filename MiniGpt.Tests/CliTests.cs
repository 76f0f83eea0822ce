using MiniGpt.Checkpoints;
using MiniGpt.Model;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>Every user mistake gives one line on stderr naming the problem, a non-zero exit code, and no stack trace.</summary>
public class CliTests
{
    private static string SmallCheckpoint(string dir, string? tokenizer = null)
    {
        var m = GptModel.Create(new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 8, DVocab = 12 }, 1);
        string p = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(p, m, tokenizer);
        return p;
    }

    [Fact]
    public void BadCommandLinesExitWithTwo()
    {
        TestPaths.AssertOneLineError(TestPaths.Cli("fly"), 2, "unknown verb");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--bogus", "1"), 2, "--bogus");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--lr", "fast"), 2, "--lr");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--steps"), 2, "needs a value");
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--data", "x.bin"), 2, "--checkpoint");
    }

    // a model whose weights are finite but whose loss is not (W_U at ±3e38 overflows the logits; a diverged run's last
    // checkpoint can be like that): eval --json threw (JSON has no NaN) and circuits threw from its eigenvalue and SVD code
    [Fact]
    public void AModelWhoseLossOverflowsIsReportedNotThrownOn()
    {
        string dir = TestPaths.TempDir("overflow");
        var m = GptModel.Create(new ModelConfig { NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, NCtx = 32, DVocab = 64, AttnOnly = true }, 1);
        m.Params["unembed.W_U"].Span.Fill(3e38f);
        m.Params["unembed.W_U"].Span[0] = -3e38f;
        string ckpt = Path.Combine(dir, "overflow.safetensors");
        Checkpoint.Save(ckpt, m, null);
        var json = TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", "induction", "--json");
        Assert.True(json.Code == 0, json.Err);
        var e = System.Text.Json.JsonDocument.Parse(json.Out).RootElement;
        Assert.Equal(System.Text.Json.JsonValueKind.Null, e.GetProperty("loss").ValueKind);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, e.GetProperty("bits_per_token").ValueKind);
        var text = TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", "induction");
        Assert.True(text.Code == 0, text.Err);
        Assert.Matches(@"^loss (nan|inf) ", text.Out);
        var circuits = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--out", Path.Combine(dir, "c"));
        Assert.True(circuits.Code == 0, circuits.Err);
        Assert.Contains("the model's loss is not finite", circuits.Out);
        System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "c", "circuits.json"))); // valid JSON: non-finite numbers as null
        Directory.Delete(dir, true);
    }

    // eval --checkpoint F --grads F replaced the trained weights with gradients (exit 0); a copy of /dev/null or a FIFO as
    // --grads was replaced by a regular file. Every refusal comes before any work, and leaves the files as they were.
    [Fact]
    public void EvalsGradientsNeverClobberAnInputOrASpecialFile()
    {
        string dir = TestPaths.TempDir("grads-out");
        string ckpt = SmallCheckpoint(dir);
        byte[] weights = File.ReadAllBytes(ckpt);
        string[] Eval(string grads, params string[] more) => ["eval", "--checkpoint", ckpt, "--data", "induction", "--grads", grads, .. more];
        TestPaths.AssertOneLineError(TestPaths.Cli(Eval(ckpt)), 2, "--grads");
        TestPaths.AssertOneLineError(TestPaths.Cli(Eval(ckpt, "--overwrite")), 2, "is also an input");
        Assert.Equal(weights, File.ReadAllBytes(ckpt));
        TestPaths.AssertOneLineError(TestPaths.Cli(Eval(dir)), 2, "is a directory");
        TestPaths.AssertOneLineError(TestPaths.Cli(Eval(Path.Combine(dir, "no-such-folder", "g.safetensors"))), 2, "does not exist");
        string fifo = Path.Combine(dir, "fifo");
        if (OperatingSystem.IsLinux() && System.Diagnostics.Process.Start("mkfifo", fifo) is { } mk && mk.WaitForExit(10_000) && mk.ExitCode == 0)
        {
            TestPaths.AssertOneLineError(TestPaths.Cli(Eval(fifo, "--overwrite")), 2, "not a regular file");
            Assert.True((File.GetUnixFileMode(fifo) & UnixFileMode.UserRead) != 0 && new FileInfo(fifo).Length == 0, "the FIFO was replaced");
        }
        string grads = Path.Combine(dir, "g.safetensors");
        var first = TestPaths.Cli(Eval(grads));
        Assert.True(first.Code == 0, first.Err);
        TestPaths.AssertOneLineError(TestPaths.Cli(Eval(grads)), 2, "already exists");
        var again = TestPaths.Cli(Eval(grads, "--overwrite"));
        Assert.True(again.Code == 0, again.Err);
        Directory.Delete(dir, true);
    }

    // train --out "", prepare --out "", eval --grads "", circuits --out "" ended in an ArgumentException's stack trace (exit 134)
    [Theory]
    [InlineData("train", "--out", "")]
    [InlineData("train", "--out", "   ")]
    [InlineData("prepare", "--out", "")]
    [InlineData("eval", "--grads", "")]
    [InlineData("circuits", "--out", "")]
    [InlineData("train", "--init-from", " ")]
    [InlineData("sample", "--checkpoint", "")]
    public void AnEmptyPathIsRefusedAtOptionParsing(string verb, string option, string value)
    {
        string[] args = verb switch
        {
            "prepare" => ["prepare", "--data", TestPaths.Shakespeare, option, value],
            "eval" or "circuits" => [verb, "--checkpoint", "no-such.safetensors", option, value],
            _ => [verb, option, value],
        };
        TestPaths.AssertOneLineError(TestPaths.Cli(args), 2, $"{option} is empty");
    }

    [Fact]
    public void ImpossibleConfigsExitWithOne()
    {
        string dir = TestPaths.TempDir("cli-cfg");
        string o = Path.Combine(dir, "m.safetensors");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--d-model", "0", "--out", o), 1, "d_model");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--n-heads", "-2", "--out", o), 1, "n_heads");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--d-model", "30", "--n-heads", "4", "--out", o), 1, "divisible");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--batch-size", "0", "--out", o), 1, "--batch-size");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--normalization", "RMS", "--out", o), 1, "--normalization");
        Assert.False(File.Exists(o));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void BadDataFilesExitWithOneAndWriteNothing()
    {
        string dir = TestPaths.TempDir("cli-data");
        string o = Path.Combine(dir, "out.safetensors");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", Path.Combine(dir, "missing.txt"), "--out", o), 1, "does not exist");
        string empty = Path.Combine(dir, "empty.txt");
        File.WriteAllText(empty, "");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", empty, "--out", o), 1, "empty");
        string shortText = Path.Combine(dir, "short.txt");
        File.WriteAllText(shortText, "hello world, too short for a window of sixty-five characters");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", shortText, "--out", o), 1, "fewer than one window");
        string bin = Path.Combine(dir, "t.bin");
        MiniGpt.Data.TokenFile.WriteBin(bin, Enumerable.Range(0, 300).ToArray());
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", bin, "--d-vocab", "100", "--out", o), 1, "≥ the vocabulary size 100");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", bin, "--out", o), 1, "--d-vocab");
        string notUtf8 = Path.Combine(dir, "latin1.txt");
        File.WriteAllBytes(notUtf8, new byte[] { 0x68, 0xE9, 0x6C, 0x6C, 0x6F });
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", notUtf8, "--out", o), 1, "UTF-8");
        Assert.False(File.Exists(o));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void EvalAndSampleRejectBadCheckpointsAndData()
    {
        string dir = TestPaths.TempDir("cli-eval");
        string ckpt = SmallCheckpoint(dir);
        string data = Path.Combine(dir, "d.bin");
        MiniGpt.Data.TokenFile.WriteBin(data, new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 });
        Assert.Equal(0, TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", data).Code);

        MiniGpt.Data.TokenFile.WriteBin(data, new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12 });
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", data), 1, "token 12");
        MiniGpt.Data.TokenFile.WriteBin(data, new[] { 1, 2, 3 });
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", data), 1, "fewer than one window");

        string truncated = Path.Combine(dir, "trunc.safetensors");
        var bytes = File.ReadAllBytes(ckpt);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", truncated, "--data", data), 1, "truncated");
        string foreign = Path.Combine(dir, "foreign.safetensors");
        File.WriteAllText(foreign, "{\"not\": \"a checkpoint\"}");
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", foreign, "--data", data), 1, "not a safetensors checkpoint");
        TestPaths.AssertOneLineError(TestPaths.Cli("sample", "--checkpoint", ckpt), 1, "no tokenizer");
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", Path.Combine(dir, "nope.safetensors"), "--data", data), 1, "does not exist");

        // a failed write of --grads never leaves a half-written file behind
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TrainThenEvalAndSampleEndToEnd()
    {
        string dir = TestPaths.TempDir("cli-e2e");
        string text = Path.Combine(dir, "t.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat. ", 200)));
        string o = Path.Combine(dir, "m.safetensors");
        var r = TestPaths.Cli("train", "--data", text, "--out", o, "--steps", "60", "--n-layers", "1", "--d-model", "32",
            "--n-heads", "2", "--n-ctx", "16", "--batch-size", "8", "--eval-interval", "30", "--log-interval", "30");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("step 60/60", r.Out);
        Assert.True(File.Exists(o) && File.Exists(Checkpoint.TrainStatePath(o)));

        var e = TestPaths.Cli("eval", "--checkpoint", o, "--data", text, "--json");
        Assert.True(e.Code == 0, e.Err);
        var json = System.Text.Json.JsonDocument.Parse(e.Out).RootElement;
        Assert.True(json.GetProperty("loss").GetDouble() < 1.5, e.Out); // 11 distinct characters: ln 11 = 2.4 before training
        Assert.Equal((File.ReadAllText(text).Length - 1) / 16, json.GetProperty("windows").GetInt32());

        var s = TestPaths.Cli("sample", "--checkpoint", o, "--prompt", "the ", "--tokens", "30", "--temperature", "0");
        Assert.True(s.Code == 0, s.Err);
        Assert.StartsWith("the ", s.Out);
        Assert.Equal(4 + 30, s.Out.TrimEnd('\n').Length);
        TestPaths.AssertOneLineError(TestPaths.Cli("sample", "--checkpoint", o, "--prompt", "dog!"), 1, "not in the model's vocabulary");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--resume", o, "--steps", "500"), 2, "--steps cannot be changed when resuming");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", text, "--out", dir), 2, "is a directory");
        var before = File.ReadAllBytes(o);
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--data", text, "--out", o, "--steps", "5"), 2, "--overwrite");
        Assert.Equal(before, File.ReadAllBytes(o));
        Directory.Delete(dir, true);
    }
}

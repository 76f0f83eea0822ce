using System.Text.Json;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// A run folder runs/NAME is accepted wherever a checkpoint is, as train --resume accepts it: every verb that
/// reads a checkpoint reads the run's model.safetensors, and gives the result it gives for that file.
/// </summary>
public class RunFolderAsCheckpointTests
{
    private static readonly string[] Tiny =
        ["--n-layers", "2", "--d-model", "16", "--n-heads", "2", "--n-ctx", "16", "--batch-size", "4", "--steps", "4", "--eval-batches", "1",
         "--warmup-steps", "1", "--threads", "1"];

    [Fact]
    public void EveryVerbThatReadsACheckpointTakesARunFolder()
    {
        string root = TestPaths.TempDir("run-as-ckpt");
        var t = TestPaths.Cli(["train", .. Tiny, "--runs-dir", root, "--name", "ind"]);
        Assert.True(t.Code == 0, t.Err);
        string run = Path.Combine(root, "ind"), file = Path.Combine(run, "model.safetensors");

        // eval: the same loss from the folder as from its checkpoint
        var byFile = TestPaths.Cli("eval", "--checkpoint", file, "--data", "induction", "--json", "--threads", "1");
        var byRun = TestPaths.Cli("eval", "--checkpoint", run, "--data", "induction", "--json", "--threads", "1");
        Assert.True(byRun.Code == 0, byRun.Err);
        Assert.Equal(JsonDocument.Parse(byFile.Out).RootElement.GetProperty("loss").GetDouble(), JsonDocument.Parse(byRun.Out).RootElement.GetProperty("loss").GetDouble());

        var c = TestPaths.Cli("circuits", "--checkpoint", run, "--json", "--batches", "1", "--ablate", "none", "--out", Path.Combine(root, "c"), "--threads", "1");
        Assert.True(c.Code == 0, c.Err);
        Assert.Equal(file, JsonDocument.Parse(c.Out).RootElement.GetProperty("checkpoint").GetString());

        var p = TestPaths.Cli("patch", "--checkpoint", run, "--batch", "2", "--sites", "z", "--no-attribution", "--receivers", "none", "--json", "--out", Path.Combine(root, "p"), "--threads", "1");
        Assert.True(p.Code == 0, p.Err);

        var s = TestPaths.Cli("sae", "--checkpoint", run, "--steps", "4", "--batch-rows", "16", "--buffer", "64", "--eval-batches", "1", "--d-sae", "8", "--k", "2",
            "--features", "2", "--out", Path.Combine(root, "s"), "--threads", "1");
        Assert.True(s.Code == 0, s.Err);

        string converted = Path.Combine(root, "conv.safetensors");
        var v = TestPaths.Cli("convert", "--checkpoint", run, "--out", converted);
        Assert.True(v.Code == 0, v.Err);
        Assert.True(File.Exists(converted));

        var f = TestPaths.Cli(["train", "--init-from", run, "--steps", "2", "--batch-size", "4", "--eval-batches", "1", "--warmup-steps", "1", "--threads", "1",
            "--runs-dir", root, "--name", "ft"]);
        Assert.True(f.Code == 0, f.Err);
        Assert.Contains("init from:", f.Out);

        // sample needs a tokenizer: a run on text
        string text = Path.Combine(root, "t.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat.\n", 40)));
        var tt = TestPaths.Cli(["train", .. Tiny, "--data", text, "--runs-dir", root, "--name", "txt"]);
        Assert.True(tt.Code == 0, tt.Err);
        var sm = TestPaths.Cli("sample", "--checkpoint", Path.Combine(root, "txt"), "--prompt", "the", "--tokens", "5", "--threads", "1");
        Assert.True(sm.Code == 0, sm.Err);
        Assert.StartsWith("the", sm.Out);

        // a folder that is no run (nor a Hugging Face GPT-2 folder) is a one-line error saying what to give
        string empty = Path.Combine(root, "empty");
        Directory.CreateDirectory(empty);
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", empty, "--data", "induction"), 1, "run folder");
        TestPaths.AssertOneLineError(TestPaths.Cli("sample", "--checkpoint", empty), 1, "run folder");
        // a folder whose config.json is not a run's is left to the checkpoint loader, which names what it is not
        File.Copy(file, Path.Combine(empty, "model.safetensors"));
        File.WriteAllText(Path.Combine(empty, "config.json"), "{\"model_type\": \"bert\"}");
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--checkpoint", empty, "--data", "induction"), 1, "is not a GPT-2 config");
        Directory.Delete(root, true);
    }
}

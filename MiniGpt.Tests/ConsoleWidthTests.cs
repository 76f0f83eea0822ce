using MiniGpt.Sae;
using MiniGpt.Train.Progress;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>The console's tables and log lines fit a default terminal of 80 columns.</summary>
public class ConsoleWidthTests
{
    /// <summary>Every line of out within 80 columns, once the test's long temporary folder is written as "D".</summary>
    private static void AssertFits(string what, string output, string dir)
    {
        foreach (string line in output.Replace(dir, "D").Split('\n'))
            Assert.True(line.TrimEnd('\r').Length <= ConsoleLine.Columns, $"{what}: {line.Length} columns: {line}");
    }

    [Fact]
    public void TrainEvalAndBenchFitIn80Columns()
    {
        string dir = TestPaths.TempDir("width");
        string text = Path.Combine(dir, "t.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat; the dog sat on the log.\n", 60)));
        string[] tiny = ["--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--n-ctx", "16", "--batch-size", "2", "--steps", "20",
            "--log-interval", "5", "--eval-interval", "10", "--eval-batches", "1", "--threads", "1", "--runs-dir", dir];
        var ind = TestPaths.Cli(["train", .. tiny, "--name", "ind"]);
        Assert.True(ind.Code == 0, ind.Err);
        AssertFits("train on induction", ind.Out, dir);
        Assert.Contains("copy loss", ind.Out);
        var txt = TestPaths.Cli(["train", .. tiny, "--data", text, "--name", "txt"]);
        Assert.True(txt.Code == 0, txt.Err);
        AssertFits("train on text", txt.Out, dir);
        Assert.Contains("bits/byte", txt.Out);
        foreach (string data in new[] { "induction", text })
        {
            var e = TestPaths.Cli("eval", "--checkpoint", Path.Combine(dir, data == text ? "txt" : "ind"), "--data", data, "--grads", Path.Combine(dir, "g.safetensors"), "--overwrite");
            Assert.True(e.Code == 0, e.Err);
            AssertFits($"eval on {data}", e.Out, dir);
        }
        var b = TestPaths.Cli("bench", "--steps", "1", "--warmup", "0", "--profile", "--n-layers", "1", "--batch-size", "2", "--threads", "1");
        Assert.True(b.Code == 0, b.Err);
        AssertFits("bench --profile", b.Out, dir);
        Assert.Contains("threads idle", b.Out);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TheWidestLogLinesFit()
    {
        // sae's step line at its widest: relu (λ shown), a large L0 and mse, thousands of dead features, fast
        var sae = new SaeTrainLog(12_345, 1_234.5678, 1_234.5, -1.234, 12.34, 1.23e-3, 12_345, 12_345_678, 1);
        string line = MiniGpt.Train.SaeVerb.Format(sae, 99_999);
        Assert.True(line.Length <= 80, $"{line.Length}: {line}");
        Assert.Contains("λ 12.34", line);
        Assert.Contains("dead 12345", line);
        // topk has no λ; a typical line gives up lr (the schedule is in sae.json's config) and keeps the speed
        string topk = MiniGpt.Train.SaeVerb.Format(new SaeTrainLog(500, 12.3456, 16, 0.812, 0, 1e-3, 3, 40_123, 1), 4000);
        Assert.Equal("step  500/4000 | mse 12.3456 | L0 16.0 | EV 0.812 | dead 3 | 40,123 act/s", topk);
        Assert.Contains("lr 1.00e-03", MiniGpt.Train.SaeVerb.Format(new SaeTrainLog(5, 1.2, 16, 0.5, 0, 1e-3, 0, 0, 1), 10));
        // a comma-separated list wraps after a comma, with its items whole and the rest indented
        string wrapped = ConsoleLine.Wrap("model: " + string.Join(", ", Enumerable.Range(0, 30).Select(i => $"item {i}")), 7);
        Assert.All(wrapped.Split('\n'), l => Assert.True(l.Length <= 80, l));
        Assert.All(wrapped.Split('\n').Skip(1), l => Assert.StartsWith("       item ", l));
        Assert.Equal(string.Join(", ", Enumerable.Range(0, 30).Select(i => $"item {i}")), string.Join(" ", wrapped[7..].Split('\n').Select(l => l.Trim())));
        // not inside parentheses
        string data = ConsoleLine.Wrap("data: /a/long/path/to/some/corpus/of/text/tinyshakespeare.txt (char, 65 tokens): 1,003,854 train / 111,540 val tokens", 6);
        Assert.Contains("(char, 65 tokens)", data);
        Assert.Equal(2, data.Split('\n').Length);
        // a field gives way only when the line would not fit
        Assert.Equal("a | lr 1 | b", ConsoleLine.Fields(["a", "lr 1", "b"], "lr "));
        Assert.DoesNotContain("lr ", ConsoleLine.Fields(["a", "lr 1", new string('x', 76)], "lr "));
    }
}

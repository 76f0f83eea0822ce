using System.Text.Json;
using System.Text.RegularExpressions;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>train's run folders (runs/NAME/): what they hold, how they are named, and exact resume through them.</summary>
public class RunFolderTests
{
    private static readonly string[] Small =
        ["--n-layers", "2", "--d-model", "32", "--n-heads", "2", "--n-ctx", "16", "--batch-size", "8", "--warmup-steps", "5", "--eval-batches", "2", "--seed", "7"];

    private static string[] Args(params string[] more) => ["train", .. Small, .. more];

    [Fact]
    public void ARunFolderHoldsConfigMetricsCheckpointAndPlot()
    {
        string root = TestPaths.TempDir("runs");
        var r = TestPaths.Cli(Args("--runs-dir", root, "--name", "a", "--steps", "20", "--eval-interval", "10", "--log-interval", "5"));
        Assert.True(r.Code == 0, r.Err);
        string dir = Path.Combine(root, "a");
        foreach (var f in new[] { "config.json", "metrics.jsonl", "model.safetensors", "model.train.safetensors", "loss.png" })
            Assert.True(File.Exists(Path.Combine(dir, f)), $"{f} is missing from the run folder");

        // config.json: every setting resolved, defaults included: the training settings, then the model as built
        var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json"))).RootElement;
        var train = cfg.GetProperty("train");
        var model = cfg.GetProperty("model");
        Assert.Equal(7UL, train.GetProperty("seed").GetUInt64());
        Assert.Equal(0.003, train.GetProperty("lr").GetDouble(), 6);        // the induction task's default
        Assert.Equal(0.9, train.GetProperty("beta1").GetDouble(), 6);
        Assert.Equal(16, model.GetProperty("d_head").GetInt32());           // d_model / n_heads, not given
        Assert.True(model.GetProperty("attn_only").GetBoolean());           // the induction task's default
        Assert.Equal(64, model.GetProperty("d_vocab").GetInt32());          // from the data
        Assert.Equal(16, model.GetProperty("n_ctx").GetInt32());
        Assert.Equal(0.8 / Math.Sqrt(32), model.GetProperty("initializer_range").GetDouble(), 12);
        Assert.Equal(2, model.GetProperty("n_layers").GetInt32());

        // metrics.jsonl: one line per logged step, evaluations where due
        var lines = File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(new long[] { 0, 5, 10, 15, 20 }, lines.Select(l => l.GetProperty("step").GetInt64()));
        Assert.Equal(JsonValueKind.Null, lines[0].GetProperty("loss").ValueKind);
        Assert.Equal(JsonValueKind.Number, lines[2].GetProperty("val_loss").ValueKind);
        Assert.Equal(JsonValueKind.Null, lines[1].GetProperty("val_loss").ValueKind);
        Assert.True(lines[4].GetProperty("tokens_per_s").GetDouble() > 0);
        Assert.True(File.ReadAllBytes(Path.Combine(dir, "loss.png")).AsSpan().StartsWith(MiniGpt.Train.Report.PlotImage.Signature));
        Assert.Contains($"run folder: {dir}", r.Out);

        // the same name again is refused (no run is lost); --overwrite starts it afresh
        var again = TestPaths.Cli(Args("--runs-dir", root, "--name", "a", "--steps", "5"));
        Assert.Equal(2, again.Code);
        Assert.Contains("already exists", again.Err);
        var over = TestPaths.Cli(Args("--runs-dir", root, "--name", "a", "--steps", "5", "--overwrite"));
        Assert.True(over.Code == 0, over.Err);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Length); // steps 0 and 5

        // without --name: a sortable generated name, date-time then the data
        var gen = TestPaths.Cli(Args("--runs-dir", root, "--steps", "2"));
        Assert.True(gen.Code == 0, gen.Err);
        var names = Directory.GetDirectories(root).Select(Path.GetFileName).Where(n => n != "a").ToList();
        Assert.Single(names);
        Assert.Matches(new Regex(@"^\d{8}-\d{6}-induction$"), names[0]);

        Assert.Equal(2, TestPaths.Cli(Args("--runs-dir", root, "--name", "../x")).Code);
        Assert.Equal(2, TestPaths.Cli(Args("--name", "b", "--out", Path.Combine(root, "m.safetensors"))).Code);
        Directory.Delete(root, true);
    }

    [Fact]
    public void ConfigJsonRecordsTheTokenizerAndValidationBatchesThatRan()
    {
        string root = TestPaths.TempDir("runs-config");
        // a prepared BPE folder, trained on without --tokenizer: the run's tokenizer is the folder's
        string text = Path.Combine(root, "t.txt"), prepared = Path.Combine(root, "prep");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat; the dog sat on the log.\n", 200)));
        var p = TestPaths.Cli("prepare", "--data", text, "--tokenizer", "bpe:300", "--out", prepared);
        Assert.True(p.Code == 0, p.Err);
        var r = TestPaths.Cli(Args("--data", prepared, "--runs-dir", root, "--name", "bpe", "--steps", "2", "--threads", "1"));
        Assert.True(r.Code == 0, r.Err);
        var train = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "bpe", "config.json"))).RootElement.GetProperty("train");
        string ranWith = Tokenizers.FromJson(Checkpoint.Load(Path.Combine(root, "bpe", "model.safetensors")).TokenizerJson!).Name;
        Assert.StartsWith("bpe:", ranWith);
        Assert.Equal(ranWith, train.GetProperty("tokenizer").GetString());
        Assert.Equal(2, train.GetProperty("eval_batches").GetInt32());  // Small's --eval-batches 2, which the text holds
        Assert.False(train.TryGetProperty("eval_batches_given", out _)); // nothing clamped, nothing to explain

        // the induction task: token ids, no tokenizer; --eval-batches 20 clamped to the task's 8, both recorded, named
        var i = TestPaths.Cli(["train", "--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--n-ctx", "16", "--batch-size", "2", "--steps", "1",
            "--eval-batches", "20", "--runs-dir", root, "--name", "ind", "--threads", "1"]);
        Assert.True(i.Code == 0, i.Err);
        var ti = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "ind", "config.json"))).RootElement.GetProperty("train");
        Assert.Equal(JsonValueKind.Null, ti.GetProperty("tokenizer").ValueKind);
        Assert.Equal(MiniGpt.Data.InductionTask.MaxValidationBatches, ti.GetProperty("eval_batches").GetInt32());
        Assert.Equal(20, ti.GetProperty("eval_batches_given").GetInt32());
        // and the run resumes with its saved settings as before
        var again = TestPaths.Cli("train", "--resume", Path.Combine(root, "bpe"), "--threads", "1");
        Assert.True(again.Code == 0, again.Err);
        Directory.Delete(root, true);
    }

    [Fact]
    public void ReopeningARunCutsItsLogsBackToTheCheckpointStep()
    {
        string dir = TestPaths.TempDir("runs-reopen");
        static string M(long step, float? loss, double elapsed) => new MiniGpt.Train.Runs.MetricsLine(step, loss, null, null, 1e-3f, 0.5f, 100, elapsed).ToJson();
        // a run killed after logging step 30 and while writing step 40's line; its checkpoint is at step 20
        File.WriteAllText(Path.Combine(dir, "metrics.jsonl"), $"{M(0, null, 0)}\n{M(10, 4.1f, 1.5)}\n{M(20, 3.9f, 3.25)}\n{M(30, 3.7f, 4)}\n{{\"step\":40,\"lo");
        File.WriteAllText(Path.Combine(dir, "model.circuits.jsonl"), "{\"step\":0}\n{\"step\":20}\n{\"step\":30}\n{\"st");
        File.WriteAllText(Path.Combine(dir, ".loss.png.123.tmp"), "half a png");
        var run = MiniGpt.Train.Runs.RunFolder.Reopen(dir, 20);
        Assert.Equal(new long[] { 0, 10, 20 }, run.Lines.Select(l => l.Step));
        Assert.Equal(3.9f, run.Lines[^1].Loss);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Length);
        Assert.Equal(["{\"step\":0}", "{\"step\":20}"], File.ReadAllLines(Path.Combine(dir, "model.circuits.jsonl")));
        Assert.Empty(Directory.GetFiles(dir, ".*.tmp"));
        // the last kept line's clock, for a state that does not carry its own; a line records the log's elapsed time as it is
        Assert.Equal(3.25, run.ElapsedAtReopen.TotalSeconds, 6);
        run.Record(new MiniGpt.Training.TrainLog(30, 3.6f, null, null, 1e-3f, 0.4f, 100, TimeSpan.FromSeconds(4.5), TimeSpan.Zero));
        Assert.Equal(4.5, run.Lines[^1].ElapsedSeconds, 6);
        // a damaged line that is not the last is an error naming it, not silently dropped
        File.WriteAllText(Path.Combine(dir, "metrics.jsonl"), $"{M(0, null, 0)}\ngarbage\n{M(20, 3.9f, 3.25)}\n");
        var e = Assert.Throws<UserError>(() => MiniGpt.Train.Runs.RunFolder.Reopen(dir, 20));
        Assert.Contains("line 2", e.Message);
        Directory.Delete(dir, true);
    }

    /// <summary>The run's loss-related numbers of metrics.jsonl, as written (shortest round-trip text: equal text is equal bits).</summary>
    internal static List<string> Curve(string dir) =>
        File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Select(l =>
        {
            var e = JsonDocument.Parse(l).RootElement;
            return string.Join(" ", new[] { "step", "loss", "val_loss", "repeat_loss", "lr", "grad_norm" }.Select(k => e.GetProperty(k).GetRawText()));
        }).ToList();

    // SIGINT (Ctrl-C), SIGTERM (kill, timeout, systemd, Docker, Slurm) and SIGHUP (a closed terminal): each saves at the next
    // step boundary and exits 128 + its number
    [Theory]
    [InlineData(2, "SIGINT")]
    [InlineData(15, "SIGTERM")]
    [InlineData(1, "SIGHUP")]
    public void AStopSignalThenResumeOfTheRunFolderEqualsTheUninterruptedRunBitForBit(int sig, string name)
    {
        string root = TestPaths.TempDir($"runs-resume-{name}");
        string[] run = Args("--runs-dir", root, "--steps", "1500", "--log-interval", "50", "--eval-interval", "250", "--checkpoint-interval", "1000", "--threads", "2");
        var full = TestPaths.Cli([.. run, "--name", "full"]);
        Assert.True(full.Code == 0, full.Err);

        // the same run in a child process, stopped by SIGINT (Ctrl-C) part-way: between two log lines and
        // two checkpoints, so the resumed run must restore the mean-loss accumulator too
        string part = Path.Combine(root, "part");
        var p = ChildTrain.Start([.. run, "--name", "part"]);
        string metrics = Path.Combine(part, "metrics.jsonl");
        bool started = ChildTrain.WaitFor(p, () => File.Exists(metrics) && File.ReadAllLines(metrics).Length >= 3, TimeSpan.FromSeconds(60));
        Assert.True(started && !p.HasExited, "the child run finished before it could be interrupted:\n" + ChildTrain.Out);
        ChildTrain.Signal(p, sig);
        Assert.True(p.WaitForExit(60_000), "the interrupted run did not stop");
        p.WaitForExit();
        Assert.True(p.ExitCode == 128 + sig, $"exit code {p.ExitCode}:\n{ChildTrain.Out}");
        lock (ChildTrain.Out) Assert.Contains($"interrupted by {name} at step ", ChildTrain.Out.ToString());
        var stopped = SafeTensorsFile.Open(Path.Combine(part, "model.safetensors")).Metadata["step"];
        Assert.True(long.Parse(stopped) is > 100 and < 1500, $"stopped at step {stopped}");

        var resumed = TestPaths.Cli("train", "--resume", part, "--threads", "1"); // the thread count does not change the numbers
        Assert.True(resumed.Code == 0, resumed.Err);
        Assert.Contains($"resuming {part} at step {stopped}", resumed.Out);
        Assert.Equal(Curve(Path.Combine(root, "full")), Curve(part));
        Assert.Equal(File.ReadAllBytes(Path.Combine(root, "full", "model.safetensors")), File.ReadAllBytes(Path.Combine(part, "model.safetensors")));
        Directory.Delete(root, true);
    }
}

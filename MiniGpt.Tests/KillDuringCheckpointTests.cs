using System.Diagnostics;
using MiniGpt.Checkpoints;
using MiniGpt.Training;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt.Tests;

/// <summary>
/// kill -9 at random moments of a run that writes a checkpoint every step: after every kill the
/// checkpoint on disk loads, its training state resumes, and the next child continues the run with
/// --resume of the run folder.
/// </summary>
public class KillDuringCheckpointTests(ITestOutputHelper output)
{
    [Fact]
    public void TheLastCheckpointAlwaysLoadsAfterSigkill()
    {
        const int kills = 20;
        string root = TestPaths.TempDir("kill9");
        string run = Path.Combine(root, "k");
        string ckpt = Path.Combine(run, "model.safetensors");
        var rng = new Random(9);
        var steps = new List<long>();
        int midWrite = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < kills; i++)
        {
            Process p = File.Exists(ckpt)
                ? ChildTrain.Start("train", "--resume", run, "--threads", "1")
                : ChildTrain.Start("train", "--runs-dir", root, "--name", "k", "--steps", "1000000", "--checkpoint-interval", "1",
                    "--log-interval", "7", "--eval-interval", "50", "--eval-batches", "1", "--n-layers", "1", "--d-model", "32",
                    "--n-heads", "2", "--n-ctx", "16", "--batch-size", "4", "--threads", "1");
            // once this child writes checkpoints (one newer than the last child's is down), kill it within 0–200 ms
            var last = File.Exists(ckpt) ? File.GetLastWriteTimeUtc(ckpt) : DateTime.MinValue;
            bool writing = ChildTrain.WaitFor(p, () => File.Exists(ckpt) && File.GetLastWriteTimeUtc(ckpt) > last, TimeSpan.FromSeconds(30));
            Assert.True(writing && !p.HasExited, $"child {i} did not start training (exit {(p.HasExited ? p.ExitCode : -1)}):\n{ChildTrain.Out}");
            Thread.Sleep(rng.Next(0, 200));
            p.Kill(); // SIGKILL
            p.WaitForExit();
            if (Directory.GetFiles(run, ".*.tmp").Length > 0) midWrite++; // the kill landed inside a checkpoint write

            var loaded = Checkpoint.Load(ckpt); // whole, finite, consistent with its config
            Assert.True(loaded.Model.Params.Buffer.All(float.IsFinite));
            var t = Trainer.Resume(ckpt);      // and its training state pairs with it
            steps.Add(t.Optimizer.Step);
        }
        output.WriteLine($"{kills} kills in {clock.Elapsed.TotalSeconds:F1} s ({midWrite} inside a checkpoint write, leaving a temporary file); the checkpoint on disk loaded and resumed every time, at steps {string.Join(", ", steps)}");
        Assert.True(steps[^1] > steps[0], "the run never progressed between kills");

        // the run folder resumes: a few more steps through the library, then its metrics and plot are readable
        var resumed = Trainer.Resume(ckpt);
        for (int i = 0; i < 3; i++) resumed.Step();
        var folder = MiniGpt.Train.Runs.RunFolder.Reopen(run, steps[^1]);
        Assert.All(folder.Lines, l => Assert.True(l.Step <= steps[^1]));
        Assert.Empty(Directory.GetFiles(run, ".*.tmp")); // what the kills left half-written is cleared on resume
        Directory.Delete(root, true);
    }
}

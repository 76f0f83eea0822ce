using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Train.Report;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests.Circuits;

/// <summary>
/// A score defined here, in the test project only: the attention on the first token of the sequence, averaged
/// over the queries after it. Registering it must be all it takes to see it in every output.
/// </summary>
public sealed class FirstTokenScore() : HeadScore("first_token", "first", "attention on the first token of the sequence",
    ["attn.hook_pattern"], new HeadRole("first-token", 0.5))
{
    public override double[][] Compute(HeadProbe probe)
    {
        int B = probe.Batch, H = probe.Config.NHeads, T = probe.SeqLen;
        return probe.PerHead((l, h) =>
        {
            var pattern = probe.Pattern(l);
            double sum = 0;
            for (int b = 0; b < B; b++)
                for (int i = 1; i < T; i++) sum += pattern[((b * H + h) * T + i) * T];
            return sum / (B * (T - 1));
        });
    }
}

/// <summary>The open set of head scores: a score registered from outside the library reaches the JSON, the table, the HTML and the log; old logs still read.</summary>
public class ScoreRegistryTests
{
    private static readonly HeadScoreSet WithFirst = HeadScoreSet.Default.With(new FirstTokenScore());

    private static GptModel Model() =>
        GptModel.Create(new ModelConfig { NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, NCtx = 16, DVocab = 20, AttnOnly = true }, 11);

    // L0H1 attends only to the first token
    private static IDisposable ForceFirst(GptModel m) =>
        m.Hooks.AddForward("blocks.0.attn.hook_pattern", (t, p) =>
        {
            int T = p.SeqLen, H = m.Config.NHeads;
            var s = t.Span;
            for (int b = 0; b < p.Batch; b++)
                for (int i = 0; i < T; i++)
                {
                    var row = s.Slice(((b * H + 1) * T + i) * T, T);
                    row.Clear();
                    row[0] = 1;
                }
        });

    private static TrainLog Log(long step) => new(step, step == 0 ? float.NaN : 2.5f, 2.9f, 1.5f, 1e-3f, 0.5f, 0, TimeSpan.Zero, TimeSpan.Zero);

    [Fact]
    public void ARegisteredScoreIsComputedLabelledAndShownEverywhere()
    {
        string dir = TestPaths.TempDir("toy-score");
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, Model(), null);
        var loaded = Checkpoint.Load(ckpt);
        var model = loaded.Model;
        using var force = ForceFirst(model);

        // computed on the shared probe, against the cached pattern of the same sequences
        var s = HeadScores.Compute(model, batch: 4, scores: WithFirst);
        Assert.Equal(1.0, s["first_token"][0][1], 1e-6);
        Assert.Equal("first-token", s.Labels[0][1]);
        var tokens = HeadProbe.RepeatedRandomTokens(20, 4, 8, 1);
        var pattern = model.RunWithCache(tokens, 4, 16, n => n == "blocks.1.attn.hook_pattern")["blocks.1.attn.hook_pattern"].Span;
        double direct = 0;
        for (int b = 0; b < 4; b++)
            for (int i = 1; i < 16; i++) direct += pattern[((b * 2 + 0) * 16 + i) * 16];
        Assert.Equal(direct / (4 * 15), s["first_token"][1][0], 1e-9);
        Assert.Null(HeadScoreSet.Default.Find("first_token")); // With made a new set
        Assert.False(HeadScores.Compute(model, batch: 4).Has("first_token"));

        // the log: two evaluations, the progress-line suffix names its top head
        var tracker = new CircuitTracker(model, ckpt, append: false, WithFirst);
        Assert.Contains(" | first L0H1 1.00", tracker.Record(Log(0)));
        tracker.Record(Log(10));
        Assert.All(File.ReadAllLines(tracker.LogPath), line => Assert.Contains("\"first_token\":[[", line));
        Assert.All(CircuitsLog.Read(tracker.LogPath, WithFirst), e => Assert.Equal(1.0, e.Scores["first_token"][0][1], 1e-6));
        Assert.All(CircuitsLog.Read(tracker.LogPath), e => Assert.False(e.Scores.Has("first_token"))); // a reader that does not know it passes it over

        // the whole run and its report
        var data = EvalData.Open("induction", loaded, 8, 1);
        var result = CircuitsAnalysis.Run(ckpt, loaded, data, new CircuitsOptions { Scores = WithFirst, AttentionHeads = [(0, 1)] });
        Assert.Equal(["first-token"], result.Heads[1].Roles);
        string outDir = Path.Combine(dir, "report");
        var written = CircuitsReport.Write(result, outDir);
        var json = JsonDocument.Parse(File.ReadAllText(written.JsonPath)).RootElement;
        Assert.Equal(1.0, json.GetProperty("heads")[1].GetProperty("first_token").GetDouble(), 1e-6);
        Assert.Equal(0.5, json.GetProperty("thresholds").GetProperty("first_token").GetDouble());
        Assert.Contains(json.GetProperty("scores").EnumerateArray(), x => x.GetProperty("name").GetString() == "first_token" && x.GetProperty("header").GetString() == "first");
        Assert.Equal(["L0H1"], json.GetProperty("headline").GetProperty("first_token_heads").EnumerateArray().Select(x => x.GetString()!).ToArray());
        Assert.Contains("training_first_token.png", json.GetProperty("plots").EnumerateArray().Select(x => x.GetString()));
        Assert.True(File.Exists(Path.Combine(outDir, "training_first_token.png")));

        string table = SummaryTable.Format(result);
        Assert.Matches(@"(?m)^head  role +OV-eig +zero-abl +mean-abl$", table);
        Assert.Matches(@"(?m)^head +prev +dup +ind +prefix +copy +cur +cur-sup +prev-sup +first$", table);
        Assert.Matches(@"(?m)^L0H1 +first-token +[-+]\d", table);
        Assert.Matches(@"(?m)^L0H1 .* 1\.000$", table);
        SummaryTableWidth.AssertTablesFit(table);
        Assert.Contains("first-token heads: L0H1 (1.00)", table);

        string html = File.ReadAllText(written.HtmlPath);
        Assert.Contains("<th title=\"attention on the first token of the sequence\">first-token</th>", html);
        Assert.Contains("<span class=\"role role-first-token\">first-token</span> heads: <b>L0H1</b> (1.00)", html);
        Assert.Contains(".role.role-first-token {", html);
        Assert.Contains("first-token 1.00", html); // the caption of L0H1's attention plot
        Directory.Delete(dir, true);
    }

    [Fact]
    public void LogsWrittenBeforeAScoreExistedStillRead()
    {
        string dir = TestPaths.TempDir("old-log");
        string path = Path.Combine(dir, "m.circuits.jsonl");
        // line 1 as train --track-circuits wrote it before the registry; line 2 lacks copying
        File.WriteAllLines(path,
        [
            """{"step":0,"loss":null,"val_loss":4.493401,"repeat_loss":4.4903617,"previous_token":[[0.9,0.1],[0.2,0.1]],"duplicate_token":[[0.04,0.04],[0.04,0.05]],"induction":[[0.03,0.04],[0.1,0.8]],"prefix_matching":[[0.03,0.04],[0.1,0.8]],"copying":[[0,0.001],[0.01,0.6]],"labels":[["previous-token",""],["","induction"]]}""",
            """{"step":250,"loss":4.19,"val_loss":4.17,"repeat_loss":4.17,"previous_token":[[0.95,0.1],[0.2,0.1]],"duplicate_token":[[0.04,0.04],[0.04,0.05]],"induction":[[0.03,0.04],[0.1,0.9]],"prefix_matching":[[0.03,0.04],[0.1,0.9]]}""",
        ]);
        var log = CircuitsLog.Read(path, WithFirst);
        Assert.Equal([0L, 250L], log.Select(e => e.Step).ToArray());
        Assert.Null(log[0].Loss);
        Assert.Equal(4.19, log[1].Loss);
        Assert.Equal(0.6, log[0].Scores["copying"][1][1]);
        Assert.False(log[0].Scores.Has("first_token"));
        Assert.False(log[1].Scores.Has("copying"));
        Assert.True(double.IsNaN(log[1].Scores.Value("copying", 1, 1)));
        Assert.Equal("induction", log[0].Scores.Labels[1][1]);
        Assert.Equal("induction", log[1].Scores.Labels[1][1]); // no labels on the line: the labeler gives them
        Assert.Equal("previous-token", log[1].Scores.Labels[0][0]);
        Assert.Equal(2, log[1].Scores.Layers);

        // its plots draw what each evaluation has
        Assert.True(TrainingScoresPlot.Summary(log, WithFirst).AsSpan().StartsWith(PlotImage.Signature));
        Assert.True(TrainingScoresPlot.PerHead(log, new CopyingScore()).AsSpan().StartsWith(PlotImage.Signature));

        // a damaged score is still an error naming its line
        File.AppendAllText(path, """{"step":500,"copying":[[0.1,"x"],[0,0]]}""" + "\n");
        var e = Assert.Throws<UserError>(() => CircuitsLog.Read(path, WithFirst));
        Assert.Contains("line 3", e.Message);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TheRegistryRefusesClashes()
    {
        Assert.Throws<ArgumentException>(() => WithFirst.With(new FirstTokenScore()));
        Assert.Throws<ArgumentException>(() => HeadScoreSet.Default.With(new CopyingScore()));
        Assert.Equal(["previous_token", "duplicate_token", "induction", "prefix_matching", "copying", "current_token", "current_token_suppression",
            "previous_token_suppression", "first_token"], WithFirst.Select(s => s.Name).ToArray());
        Assert.Equal(["previous-token", "duplicate-token", "induction", "current-token", "current-token suppression", "previous-token suppression", "first-token"],
            WithFirst.RoleScores.Select(s => s.Role!.Name).ToArray());
    }
}

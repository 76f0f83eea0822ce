using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Train.Report;
using Xunit;

namespace MiniGpt.Tests.Circuits;

/// <summary>
/// The README's default model (train with no options but --out: 2 layers, 4 heads, the induction task, 3,000 steps,
/// about 20 s on two cores), trained in-process once for every test of <see cref="DefaultModelRolesTests"/>, and the
/// circuits analysis of it as the verb runs it (4 batches of 32 validation windows).
/// </summary>
public sealed class DefaultRun : IDisposable
{
    public string Dir { get; } = TestPaths.TempDir("default-roles");
    public string Checkpoint => Path.Combine(Dir, "model.safetensors");
    public CircuitsResult Result { get; }

    public DefaultRun()
    {
        var train = TestPaths.Cli("train", "--out", Checkpoint);
        if (train.Code != 0) throw new InvalidOperationException($"training the default model failed: {train.Err}");
        var loaded = MiniGpt.Checkpoints.Checkpoint.Load(Checkpoint);
        Result = CircuitsAnalysis.Run(Checkpoint, loaded, EvalData.Open("induction", loaded, 32, 4));
    }

    public void Dispose() { try { Directory.Delete(Dir, true); } catch (IOException) { } }
}

/// <summary>
/// What the trained default model's report must say: every head that matters gets a role (L0H0 and L0H1 attend to
/// themselves and suppress that token; ablating them raises the repeated-half loss about 5× and 6×), the headline
/// leads with what ablation measures, and the U-shaped loss curve and the identical ind/prefix columns are noted.
/// </summary>
public class DefaultModelRolesTests(DefaultRun run) : IClassFixture<DefaultRun>
{
    private CircuitsResult R => run.Result;

    [Fact]
    public void L0H0AndL0H1AreCurrentTokenSuppressionHeads()
    {
        foreach (var h in R.Heads.Take(2))
        {
            Assert.True(h.Roles.Length > 0, $"{h.Name} has no role");
            Assert.Equal(CurrentTokenSuppressionScore.RoleName, h.Roles[0]); // the specific role leads
            Assert.Contains(CurrentTokenScore.RoleName, h.Roles);
            Assert.True(h.Score(CurrentTokenScore.Id) >= 0.4, $"{h.Name} current-token {h.Score(CurrentTokenScore.Id)}");
            Assert.True(h.OvCopying <= -0.5, $"{h.Name} OV eigenvalue score {h.OvCopying}");
            // the suppression score is the current-token score, gated by the OV circuit the report shows
            Assert.Equal(h.Score(CurrentTokenScore.Id), h.Score(CurrentTokenSuppressionScore.Id));
            Assert.True(h.Ablation.RepeatFactor > 2, $"{h.Name} ablation {h.Ablation.RepeatFactor}");
            Assert.True(h.Ablation.MeanMeasured);
        }
        // the induction heads copy: no suppression role for them
        Assert.All(R.Heads.Where(h => h.Roles.Contains(InductionScore.RoleName)), h =>
        {
            Assert.DoesNotContain(CurrentTokenSuppressionScore.RoleName, h.Roles);
            Assert.Equal(0, h.Score(CurrentTokenSuppressionScore.Id));
        });
        string table = SummaryTable.Format(R);
        Assert.Matches(@"L0H0  current-token suppression ", table);
        Assert.Matches(@"L0H1  current-token suppression ", table);
        SummaryTableWidth.AssertTablesFit(table);
    }

    [Fact]
    public void TheHeadlineLeadsWithTheLargestMeasuredEffect()
    {
        var c = R.Clean!;
        var top = R.Heads.Where(h => h.Ablation.Measured).MaxBy(h => Math.Abs(Math.Log(h.Ablation.Losses.Repeat / c.Repeat)))!;
        string headline = R.Headline!;
        Assert.StartsWith($"ablating {top.Name} ", headline);
        Assert.Equal(top.Name, R.HeadsByEffect[0].Name);
        // the group with the largest effect comes next, zero- and mean-ablated
        var group = R.Groups.MaxBy(g => Math.Abs(Math.Log(g.Zero.Repeat / c.Repeat)))!;
        Assert.Contains($"ablating the {group.Heads.Length} {group.Role} heads ({string.Join(", ", group.Heads)}) together", headline);
        Assert.Contains("mean-ablation", headline);
        // every role with at least two heads has a group, both ablations measured
        foreach (var score in R.ScoreSet.RoleScores)
        {
            var members = R.Heads.Where(h => h.Roles.Contains(score.Role!.Name)).Select(h => h.Name).ToArray();
            if (members.Length >= 2) Assert.Contains(R.Groups, g => g.Roles.Contains(score.Role!.Name) && g.Heads.SequenceEqual(members) && g.Mean != null);
        }
    }

    [Fact]
    public void TheUShapedLossCurveAndTheIdenticalColumnsAreNoted()
    {
        var curve = R.LossByPosition;
        double min = curve[R.IclEarly..(R.IclLate + 1)].Min();
        Assert.True(curve[R.IclLate] - min > 0.5, "the default model's curve is U-shaped (the premise of this test)");
        Assert.NotNull(R.IclNote);
        Assert.Contains(R.Notes, n => n.StartsWith("the loss-by-position curve is not monotone", StringComparison.Ordinal));
        Assert.All(R.Heads, h => Assert.Equal(h.Score(InductionScore.Id), h.Score(PrefixMatchingScore.Id)));
        Assert.Contains(R.Notes, n => n.StartsWith("the ind and prefix columns are identical by construction", StringComparison.Ordinal));
        Assert.Contains("the loss curve is U-shaped, see the note below", SummaryTable.Format(R));
    }

    [Fact]
    public void CircuitsJsonCarriesTheRolesBothAblationsAndTheNotes()
    {
        var written = CircuitsReport.Write(R, Path.Combine(run.Dir, "report"));
        var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(written.JsonPath)).RootElement;
        var heads = json.GetProperty("heads");
        for (int i = 0; i < R.Heads.Count; i++)
        {
            var h = heads[i];
            Assert.Equal(R.Heads[i].Roles, h.GetProperty("roles").EnumerateArray().Select(x => x.GetString()!).ToArray());
            Assert.Equal(R.Heads[i].Ablation.RepeatFactor, h.GetProperty("ablation").GetProperty("repeat_factor").GetDouble());
            Assert.Equal(R.Heads[i].Ablation.MeanRepeatFactor, h.GetProperty("mean_ablation").GetProperty("repeat_factor").GetDouble());
            Assert.Equal(R.Heads[i].Score(CurrentTokenScore.Id), h.GetProperty(CurrentTokenScore.Id).GetDouble());
        }
        var groups = json.GetProperty("ablation").GetProperty("groups").EnumerateArray().ToList();
        Assert.Equal(R.Groups.Count, groups.Count);
        Assert.All(groups, g => Assert.True(g.GetProperty("mean_repeat_factor").GetDouble() > 0));
        Assert.Equal(R.IclNote, json.GetProperty("icl_score").GetProperty("note").GetString());
        Assert.Equal(R.HeadsByEffect.Select(h => h.Name), json.GetProperty("headline").GetProperty("heads_by_effect").EnumerateArray().Select(x => x.GetString()!));
        Assert.Equal(R.Headline, json.GetProperty("headline").GetProperty("text").GetString());
    }

    [Fact]
    public void TheWordingFollowsTheSignOfTheChange()
    {
        var c = R.Clean!;
        foreach (var (factor, expected) in new[] { (0.99, "lowers the repeated-half loss to 0.99×"), (1.004, "raises the repeated-half loss 1.004×"), (1.6, "raises the repeated-half loss 1.60×") })
        {
            var lead = R.HeadsByEffect[0];
            var changed = lead with { Ablation = lead.Ablation with { Losses = lead.Ablation.Losses with { Repeat = factor * c.Repeat } } };
            // every other head's effect made smaller than this one's, so it still leads
            var heads = R.Heads.Select(h => h == lead ? changed
                : h with { Ablation = h.Ablation with { Losses = h.Ablation.Losses with { Repeat = c.Repeat } } }).ToList();
            string headline = Copy(R, heads).Headline!;
            Assert.StartsWith($"ablating {lead.Name} ", headline);
            Assert.Contains(expected, headline);
            if (factor < 1) Assert.DoesNotContain("raises the repeated-half loss", headline);
        }
    }

    // the result with other heads, as the analysis would have returned it
    private static CircuitsResult Copy(CircuitsResult r, List<HeadReport> heads) => new()
    {
        Checkpoint = r.Checkpoint, Config = r.Config, Parameters = r.Parameters, Text = r.Text, LayerNormFolded = r.LayerNormFolded, Notes = r.Notes,
        Data = r.Data, ScoreSet = r.ScoreSet, Scores = r.Scores, Heads = heads, Composition = r.Composition, LossByPosition = r.LossByPosition,
        IclEarly = r.IclEarly, IclLate = r.IclLate, IclScore = r.IclScore, Clean = r.Clean, Groups = [],
        CodingRates = r.CodingRates, CodingEps = r.CodingEps, Cosines = r.Cosines,
    };
}

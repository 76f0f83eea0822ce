using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>Everything a circuits run measures (<see cref="CircuitsAnalysis.Run"/>); MiniGpt.Train writes it as circuits.json, a table, PNGs and report.html.</summary>
public sealed class CircuitsResult
{
    public required string Checkpoint { get; init; }
    public required ModelConfig Config { get; init; }
    public required long Parameters { get; init; }
    public required TokenText Text { get; init; }
    public required bool LayerNormFolded { get; init; }
    public required List<string> Notes { get; init; }
    public required EvalSet Data { get; init; }
    /// <summary>The registered scores, in the order every report shows them.</summary>
    public required HeadScoreSet ScoreSet { get; init; }
    public HeadScores? Scores { get; init; }
    public required List<HeadReport> Heads { get; init; }
    public CompositionScores? Composition { get; init; }
    public required double[] LossByPosition { get; init; }
    public required int IclEarly { get; init; }
    public required int IclLate { get; init; }
    public required double IclScore { get; init; }
    public AblationLosses? Clean { get; init; }
    /// <summary>
    /// Every head of one detected role ablated at once, zero- and mean-ablated (roles with at least two heads, in
    /// registry order; roles with the same heads share one entry), since redundant heads cover for each other.
    /// </summary>
    public required List<GroupAblation> Groups { get; init; }
    /// <summary>The groups by the size of their zero-ablation effect on the repeated-half loss (<see cref="LossChange.Size"/>), largest first.</summary>
    public IReadOnlyList<GroupAblation> GroupsByEffect => Clean is { } c
        ? Groups.OrderByDescending(g => LossChange.Size(g.Zero.Repeat / c.Repeat)).ToList() : [];
    /// <summary>The ablated heads by the size of their zero-ablation effect on the repeated-half loss, largest first (a loss that falls counts as much as one that rises by the same factor).</summary>
    public IReadOnlyList<HeadReport> HeadsByEffect => Heads.Where(h => h.Ablation.Measured).OrderByDescending(h => LossChange.Size(h.Ablation.RepeatFactor)).ToList();
    /// <summary>
    /// The head whose ablation leads the headline: the head whose ablation changes the repeated-half loss most
    /// (<see cref="HeadsByEffect"/>), else (nothing ablated) the strongest induction head, else the best induction score.
    /// </summary>
    public HeadReport? HeadlineHead => HeadsByEffect.FirstOrDefault()
        ?? (Heads.Count > 0 && ScoreSet.Find(InductionScore.Id) != null ? InductionHead ?? Heads.MaxBy(h => h.Score(InductionScore.Id)) : null);
    /// <summary>The strongest head with the induction role, or null.</summary>
    public HeadReport? InductionHead => Heads.Where(h => h.Roles.Contains(InductionScore.RoleName)).OrderByDescending(h => h.Score(InductionScore.Id)).FirstOrDefault();
    /// <summary>
    /// A caveat on <see cref="IclScore"/> when the loss-by-position curve is not monotone (it is lowest before the late
    /// position, so late − early misses the dip; <see cref="InContext.Dip"/>), or null. Also in <see cref="Notes"/>.
    /// </summary>
    public string? IclNote { get; init; }
    public List<(int Head, List<SkipTrigram> Top)>? SkipTrigrams { get; init; }
    public double? BigramKl { get; init; }
    public (string[] Names, double[] Importance)? PathImportance { get; init; }
    public required double[] CodingRates { get; init; }
    public required double CodingEps { get; init; }
    public required CosineStats Cosines { get; init; }
    public string? TrainingLogPath { get; init; }
    public List<CircuitsLogEntry>? Training { get; init; }
    public AttentionExample? Attention { get; init; }
    public double Seconds { get; set; }

    /// <summary>
    /// The heads a summary shows: all of them up to <see cref="NotableHeads.AllUpTo"/>, else the notable ones (a role,
    /// a score's top 3, then the largest ablation effects), in layer, head order.
    /// </summary>
    public IReadOnlyList<HeadReport> ShownHeads => _shown ??= PickShown();
    private IReadOnlyList<HeadReport>? _shown;

    private IReadOnlyList<HeadReport> PickShown()
    {
        if (NotableHeads.ShowsAll(Heads.Count)) return Heads;
        var byAblation = Heads.Where(h => h.Ablation.Measured).OrderByDescending(h => h.Ablation.RepeatFactor).Take(NotableHeads.TopPerScore).Select(h => (h.Layer, h.Head));
        var pick = NotableHeads.Pick(Config.NLayers, Config.NHeads, ScoreSet, (s, l, h) => Heads[l * Config.NHeads + h].Score(s),
            (l, h) => Heads[l * Config.NHeads + h].Roles, byAblation);
        return pick.Select(x => Heads[x.Layer * Config.NHeads + x.Head]).ToList();
    }

    /// <summary>The heads that have the role <paramref name="score"/> gives, strongest first.</summary>
    public IEnumerable<HeadReport> WithRole(HeadScore score) =>
        score.Role is { } role ? Heads.Where(h => h.Roles.Contains(role.Name)).OrderByDescending(h => h.Score(score.Name)) : [];

    /// <summary>
    /// The findings, largest measured effect first: the head whose ablation changes the repeated-half loss most, the
    /// role group that does, then the strongest induction head when it is neither, each zero- and mean-ablated, worded by
    /// the sign of the change (<see cref="LossChange"/>), e.g. "ablating L0H2 (previous-token suppression) raises the
    /// repeated-half loss 9.75× (0.329 → 3.205 nats), mean-ablation 9.96×, the largest effect of one head; …". Null
    /// without a measured head.
    /// </summary>
    public string? Headline
    {
        get
        {
            if (HeadlineHead is not { } h || Clean is not { } c || !h.Ablation.Measured) return null;
            const string loss = "the repeated-half loss";
            var parts = new List<string>
            {
                $"ablating {h.Name}{RolesOf(h)} {LossChange.Describe(loss, c.Repeat, h.Ablation.Losses.Repeat)}{MeanOf(h.Ablation.MeanLosses, c)}" +
                // "of one head" only when every head was ablated (a wide model's default ablates its notable heads only)
                (HeadsByEffect.Count > 1 ? HeadsByEffect.Count == Heads.Count ? ", the largest effect of one head" : $", the largest of the {HeadsByEffect.Count} heads ablated" : ""),
            };
            if (GroupsByEffect is [var g, ..])
                parts.Add($"ablating the {g.Heads.Length} {g.Role} heads ({string.Join(", ", g.Heads)}) together {LossChange.Describe("it", c.Repeat, g.Zero.Repeat)}" +
                    $"{MeanOf(g.Mean, c)}" + (Groups.Count > 1 ? ", the largest of a role group" : ""));
            if (InductionHead is { Ablation.Measured: true } ih && ih != h)
                parts.Add($"the strongest induction head {ih.Name} alone {LossChange.Describe("it", c.Repeat, ih.Ablation.Losses.Repeat)}{MeanOf(ih.Ablation.MeanLosses, c)}");
            return string.Join("; ", parts);
        }
    }

    /// <summary>
    /// A head's roles for a line of text: the specific ones (<see cref="HeadScoreSet.Specific"/>) joined by ", ", or
    /// "unclear" when no score reaches a role's threshold (the head may matter, as its ablation says, but no detector names its job).
    /// </summary>
    public string RoleText(HeadReport h) => h.Roles.Length > 0 ? string.Join(", ", ScoreSet.Specific(h.Roles)) : Unclear;

    /// <summary>The role text of a head that no score's threshold names.</summary>
    public const string Unclear = "unclear";

    private string RolesOf(HeadReport h) => h.Roles.Length > 0 ? $" ({RoleText(h)})" : " (role unclear)";

    private static string MeanOf(AblationLosses? mean, AblationLosses clean) =>
        mean is { } m && double.IsFinite(m.Repeat) ? $", mean-ablation {LossChange.Factor(m.Repeat / clean.Repeat)}" : "";
}

/// <summary>
/// Every head of a role ablated together: zero-ablated, and mean-ablated when measured. <paramref name="Roles"/> are all
/// the roles that name exactly these heads (one ablation serves them all); <paramref name="Role"/> is the one the report
/// names the group by, the most specific of them (<see cref="HeadScoreSet.Specific"/>).
/// </summary>
public sealed record GroupAblation(string Role, string[] Roles, string[] Heads, AblationLosses Zero, AblationLosses? Mean);

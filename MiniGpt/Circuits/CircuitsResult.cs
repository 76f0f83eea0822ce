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
    /// <summary>Every head of one detected role ablated at once (roles with at least two heads, in registry order), since redundant heads cover for each other.</summary>
    public required List<(string Role, string[] Heads, AblationLosses Losses)> GroupAblations { get; init; }
    /// <summary>The head whose ablation is the headline: the strongest induction head.</summary>
    public HeadReport? HeadlineHead { get; init; }
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

    /// <summary>"ablating the induction head L1H2 raises the repeated-half loss 12.3× (0.181 → 2.23 nats)", or null without heads.</summary>
    public string? Headline
    {
        get
        {
            if (HeadlineHead is not { } h || Clean is null || !h.Ablation.Measured) return null;
            double threshold = ScoreSet.Find(InductionScore.Id)?.Role?.Threshold ?? double.NaN;
            string what = h.Roles.Contains(InductionScore.RoleName) ? "the induction head" : $"the head with the highest induction score (below the {threshold} threshold),";
            string line = $"ablating {what} {h.Name} raises the repeated-half loss {h.Ablation.RepeatFactor:0.0}× ({Clean.Repeat:0.000} → {h.Ablation.Losses.Repeat:0.000} nats)";
            foreach (var (_, names, losses) in GroupAblations.Where(g => g.Role == InductionScore.RoleName))
                line += $"; all {names.Length} induction heads together {losses.Repeat / Clean.Repeat:0.0}× ({losses.Repeat:0.000} nats)";
            return line;
        }
    }
}

namespace MiniGpt.Circuits;

/// <summary>What a circuits run computes beyond its fixed analyses, and how it reports progress.</summary>
public sealed record CircuitsOptions
{
    /// <summary>The head scores to compute, label with and show, in this order.</summary>
    public HeadScoreSet Scores { get; init; } = HeadScoreSet.Default;
    /// <summary>Heads whose attention patterns to keep; null: the strongest induction head and the strongest previous-token head.</summary>
    public IReadOnlyList<(int Layer, int Head)>? AttentionHeads { get; init; }
    /// <summary>Called with the name of each stage as it starts ("head scores", "head ablations", …).</summary>
    public Action<string>? Stage { get; init; }
}

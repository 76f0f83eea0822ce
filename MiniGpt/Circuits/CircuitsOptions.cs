namespace MiniGpt.Circuits;

/// <summary>What a circuits run computes beyond its fixed analyses, and how it reports progress.</summary>
public sealed record CircuitsOptions
{
    /// <summary>The head scores to compute, label with and show, in this order.</summary>
    public HeadScoreSet Scores { get; init; } = HeadScoreSet.Default;
    /// <summary>Heads whose attention patterns to keep; null: the strongest induction head and the strongest previous-token head.</summary>
    public IReadOnlyList<(int Layer, int Head)>? AttentionHeads { get; init; }
    /// <summary>
    /// Heads to zero-ablate one at a time. null: every head of a model with at most <see cref="NotableHeads.AllUpTo"/>
    /// heads, else the notable ones (a forward pass over the data and the probe per head: 144 of them at GPT-2
    /// small's size would take minutes); an empty list: none. The heads left out read NaN.
    /// </summary>
    public IReadOnlyList<(int Layer, int Head)>? AblatedHeads { get; init; }
    /// <summary>Ablate every head whatever the model's size (overrides <see cref="AblatedHeads"/>).</summary>
    public bool AblateAll { get; init; }
    /// <summary>Called with the name of each stage as it starts ("head scores", "head ablations", …).</summary>
    public Action<string>? Stage { get; init; }
}

namespace MiniGpt.Circuits;

/// <summary>
/// current_token: the attention a head puts on the query's own position, A[i, i] (the mean diagonal of
/// hook_pattern), over the queries i = 1 … 2L−1 of every probe sequence (query 0 can attend nowhere else). 1 for
/// a head that always attends to itself. Gives the role current-token at ≥ 0.4, previous-token's threshold.
/// On the trained default model (README) L0H0 and L0H1 score 0.8–1.0 here and nothing else: their OV circuit
/// suppresses the attended token (eigenvalue score −1.00), which <see cref="CurrentTokenSuppressionScore"/> names.
/// </summary>
public sealed class CurrentTokenScore() : HeadScore(Id, "cur", "attention from each position to itself (the mean diagonal of the pattern)",
    ["attn.hook_pattern"], new HeadRole(RoleName, 0.4))
{
    public const string Id = "current_token";
    public const string RoleName = "current-token";

    public override double[][] Compute(HeadProbe probe) => probe.PerHead((l, h) => DiagonalAttention.Mean(probe, l, h, offset: 0));
}

namespace MiniGpt.Circuits;

/// <summary>
/// previous_token: the attention a head puts on the position just before the query, A[i, i−1], averaged
/// over the queries i = 1 … 2L−1 of every probe sequence (TransformerLens's previous_token_head pattern).
/// 1 for a head that always attends one back (TL's 'mul' error measure divides by the sum of the whole
/// pattern, query 0's row included, so the same head scores (T−1)/T there). Gives the role previous-token at ≥ 0.4, the threshold the
/// detector exercises of the ARENA TransformerLens tutorials use.
/// </summary>
public sealed class PreviousTokenScore() : HeadScore(Id, "prev", "attention from each position to the one before it",
    ["attn.hook_pattern"], new HeadRole(RoleName, 0.4))
{
    public const string Id = "previous_token";
    public const string RoleName = "previous-token";

    public override double[][] Compute(HeadProbe probe) => probe.PerHead((l, h) => DiagonalAttention.Mean(probe, l, h, offset: 1));
}

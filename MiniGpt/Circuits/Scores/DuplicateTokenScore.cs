namespace MiniGpt.Circuits;

/// <summary>
/// duplicate_token: Σ_{j&lt;i, tok_j = tok_i} A[i, j], the attention to earlier copies of the current token,
/// averaged over the queries i whose token occurred before (TransformerLens's duplicate_token_head
/// pattern). The first half of a probe sequence is drawn without replacement when d_vocab ≥ L, so this is
/// then exactly the attention from i to i−L. TL's 'mul' error measure divides the matched attention by the
/// sum of the whole pattern (all query rows), so a perfect duplicate head scores ½ there on a repeated
/// sequence; here only rows that have a target count, so a perfect head scores 1. Gives the role
/// duplicate-token at ≥ 0.4.
/// </summary>
public sealed class DuplicateTokenScore() : HeadScore("duplicate_token", "dup", "attention to earlier copies of the current token",
    ["attn.hook_pattern"], new HeadRole("duplicate-token", 0.4))
{
    public override double[][] Compute(HeadProbe probe) => EarlierCopies.Score(probe, keyOffset: 0);
}

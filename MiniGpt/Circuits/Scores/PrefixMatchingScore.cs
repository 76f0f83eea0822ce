namespace MiniGpt.Circuits;

/// <summary>
/// prefix_matching: Σ_{j&lt;i, tok_j = tok_i} A[i, j+1], the attention to the token that followed an earlier
/// copy of the current token, averaged over the queries whose token occurred before: TransformerLens's
/// induction_head detection pattern (the duplicate pattern shifted one key to the right), which is Olsson
/// et al. 2022's "prefix matching", found by token identity. Equal to induction when the first half has no
/// repeats (d_vocab ≥ L); it differs when it does. Gives no role (induction does).
/// </summary>
public sealed class PrefixMatchingScore() : HeadScore(Id, "prefix",
    "attention to the token after an earlier copy of the current token (Olsson et al.'s prefix matching)", ["attn.hook_pattern"])
{
    public const string Id = "prefix_matching";

    public override double[][] Compute(HeadProbe probe) => EarlierCopies.Score(probe, keyOffset: 1);
}

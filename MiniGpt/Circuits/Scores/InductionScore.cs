namespace MiniGpt.Circuits;

/// <summary>
/// induction: A[i, i−L+1] over the queries i = L … 2L−1 of the repeated half, the "induction stripe" of the
/// TransformerLens tutorials: the attention on the token after the earlier copy of the current token, found
/// by offset. 1 for a head that always attends there. Gives the role induction at ≥ 0.4; on the default
/// trained model (README) all four layer-1 heads have it (0.88–0.97).
/// </summary>
public sealed class InductionScore() : HeadScore(Id, "ind", "attention from the repeat to the token after the current token's first occurrence",
    ["attn.hook_pattern"], new HeadRole(RoleName, 0.4))
{
    public const string Id = "induction";
    /// <summary>The role name, which the circuits headline (ablating the induction heads) looks for.</summary>
    public const string RoleName = "induction";

    public override double[][] Compute(HeadProbe probe)
    {
        int B = probe.Batch, H = probe.Config.NHeads, T = probe.SeqLen, L = probe.Half;
        return probe.PerHead((l, h) =>
        {
            var pattern = probe.Pattern(l);
            double sum = 0; long n = 0;
            for (int b = 0; b < B; b++)
            {
                var A = pattern.Slice((b * H + h) * T * T, T * T);
                for (int i = L; i < T; i++) { sum += A[i * T + i - L + 1]; n++; }
            }
            return sum / n;
        });
    }
}

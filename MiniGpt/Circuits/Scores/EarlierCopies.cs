namespace MiniGpt.Circuits;

/// <summary>
/// The attention of duplicate_token (keyOffset 0) and prefix_matching (keyOffset 1): for every query i whose
/// token occurred at earlier positions j, the attention on the keys j + keyOffset, summed over those j, then
/// averaged over such queries of every sequence (0 when no query has an earlier copy).
/// </summary>
internal static class EarlierCopies
{
    public static double[][] Score(HeadProbe probe, int keyOffset)
    {
        int B = probe.Batch, H = probe.Config.NHeads, T = probe.SeqLen;
        return probe.PerHead((l, h) =>
        {
            var pattern = probe.Pattern(l);
            double sum = 0; long n = 0;
            for (int b = 0; b < B; b++)
            {
                var tok = probe.Tokens.AsSpan(b * T, T);
                var A = pattern.Slice((b * H + h) * T * T, T * T);
                for (int i = 1; i < T; i++)
                {
                    bool seen = false; double s = 0;
                    for (int j = 0; j < i; j++)
                        if (tok[j] == tok[i]) { seen = true; s += A[i * T + j + keyOffset]; }
                    if (seen) { sum += s; n++; }
                }
            }
            return n == 0 ? 0 : sum / n;
        });
    }
}

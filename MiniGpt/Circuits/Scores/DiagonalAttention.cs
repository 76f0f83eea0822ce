namespace MiniGpt.Circuits;

/// <summary>
/// The attention of previous_token (offset 1) and current_token (offset 0): A[i, i − offset] averaged over the
/// queries i = 1 … 2L−1 of every probe sequence. Query 0 is left out for both: it can attend only to itself, so
/// its A[0, 0] = 1 says nothing about the head (and it has no previous token).
/// </summary>
internal static class DiagonalAttention
{
    public static double Mean(HeadProbe probe, int layer, int head, int offset)
    {
        int B = probe.Batch, H = probe.Config.NHeads, T = probe.SeqLen;
        var pattern = probe.Pattern(layer);
        double sum = 0; long n = 0;
        for (int b = 0; b < B; b++)
        {
            var A = pattern.Slice((b * H + head) * T * T, T * T);
            for (int i = 1; i < T; i++) { sum += A[i * T + i - offset]; n++; }
        }
        return sum / n;
    }
}

namespace MiniGpt.Train;

/// <summary>
/// Levenshtein distance with adjacent transpositions (optimal string alignment): the fewest insertions,
/// deletions, substitutions and swaps of two neighbours that turn a into b, so "stpes" is 1 from "steps".
/// d[i, j] = min(d[i−1, j] + 1, d[i, j−1] + 1, d[i−1, j−1] + [a_i ≠ b_j], d[i−2, j−2] + 1 when a_i a_(i−1) = b_(j−1) b_j).
/// </summary>
internal static class EditDistance
{
    public static int Of(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                int v = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) v = Math.Min(v, d[i - 2, j - 2] + 1);
                d[i, j] = v;
            }
        return d[a.Length, b.Length];
    }
}

using System.Text;

namespace MiniGpt.Data;

/// <summary>
/// Learns a byte-level BPE vocabulary (Sennrich et al. 2016 on UTF-8 bytes, as GPT-2): start from the
/// 256 bytes, and repeatedly merge the adjacent pair of tokens that occurs most often in the text
/// (counted inside the pieces of <see cref="ByteLevel.Split"/>, weighted by how often each piece
/// occurs), until the vocabulary has the requested size. Ties go to the pair of smaller ids, so the
/// result depends only on the text. Token id b &lt; 256 is byte b; merge k makes token 256 + k.
/// </summary>
public static class BpeTrainer
{
    public const int MinVocab = 257;

    /// <summary>The merges in order, each as (left id, right id); token 256 + k is merge k.</summary>
    public static List<(int Left, int Right)> Learn(string text, int vocabSize)
    {
        if (vocabSize < MinVocab) throw new UserError($"bpe:{vocabSize}: a byte-level BPE vocabulary needs at least {MinVocab} tokens (the 256 bytes and one merge): use bpe:N with N ≥ {MinVocab}");
        // distinct pieces and their counts: merges never cross a piece, so each distinct piece is worked on once
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var m in ByteLevel.Split.EnumerateMatches(text))
        {
            var piece = text.Substring(m.Index, m.Length);
            counts[piece] = counts.GetValueOrDefault(piece) + 1;
        }
        var words = new List<int[]>(counts.Count);
        var freq = new List<long>(counts.Count);
        var lengths = new List<int>(counts.Count);
        foreach (var (piece, n) in counts)
        {
            byte[] b = Encoding.UTF8.GetBytes(piece);
            if (b.Length < 2) continue; // nothing to merge inside it
            words.Add(Array.ConvertAll(b, x => (int)x));
            lengths.Add(b.Length);
            freq.Add(n);
        }

        var merges = new List<(int, int)>(vocabSize - 256);
        var pairs = new Dictionary<long, long>();
        while (256 + merges.Count < vocabSize)
        {
            pairs.Clear();
            for (int w = 0; w < words.Count; w++)
            {
                var ids = words[w]; int len = lengths[w]; long f = freq[w];
                for (int i = 0; i + 1 < len; i++)
                {
                    long key = ((long)ids[i] << 32) | (uint)ids[i + 1];
                    pairs[key] = pairs.GetValueOrDefault(key) + f;
                }
            }
            if (pairs.Count == 0) break; // every piece is one token: the text has no more pairs to merge
            long best = -1, bestCount = 0;
            foreach (var (key, c) in pairs)
                if (c > bestCount || (c == bestCount && key < best)) { best = key; bestCount = c; }
            int left = (int)(best >> 32), right = (int)(best & 0xFFFFFFFF), id = 256 + merges.Count;
            merges.Add((left, right));
            for (int w = 0; w < words.Count; w++)
            {
                var ids = words[w]; int len = lengths[w], o = 0;
                for (int i = 0; i < len; i++)
                {
                    if (i + 1 < len && ids[i] == left && ids[i + 1] == right) { ids[o++] = id; i++; }
                    else ids[o++] = ids[i];
                }
                lengths[w] = o;
            }
        }
        return merges;
    }
}

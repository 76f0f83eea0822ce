namespace MiniGpt.Data;

/// <summary>
/// Evaluation data as <see cref="EvalData.Open"/> cuts it: a description for reports, the batches of
/// [B, seqLen] windows (with the induction task's mask of predictable positions), the token stream the
/// windows were cut from as far as it was read (the bigram statistics of a zero-layer model, the tokens an
/// attention example draws from), and the tokenizer that turns those tokens into text, when one is known
/// (bits per byte).
/// </summary>
public sealed record EvalSet(string Description, IReadOnlyList<EvalBatch> Batches, int SeqLen, int[] Corpus, string? TokenizerJson = null)
{
    public long Tokens
    {
        get
        {
            long n = 0;
            foreach (var b in Batches) n += b.Inputs.Length;
            return n;
        }
    }

    /// <summary>Windows (rows of SeqLen tokens) over all batches.</summary>
    public long Windows => Tokens / SeqLen;

    /// <summary>Whether the batches carry a mask, so that a masked mean (the predictable positions) exists.</summary>
    public bool HasMask => Batches.Count > 0 && Batches[0].Mask != null;
}

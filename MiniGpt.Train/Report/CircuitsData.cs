namespace MiniGpt.Train.Report;

/// <summary>
/// The evaluation data of a circuits run: batches of [B, n_ctx] inputs and targets (for the loss by
/// position, the ablations, path expansion and coding rates), for the induction task the mask of
/// positions whose target is a predictable copy, and the token stream (for the bigram statistics of a
/// zero-layer model).
/// </summary>
public sealed record CircuitsData(string Description, IReadOnlyList<MiniGpt.Data.EvalBatch> Batches, int[] Corpus)
{
    public long Tokens => Batches.Sum(b => (long)b.Inputs.Length);
}

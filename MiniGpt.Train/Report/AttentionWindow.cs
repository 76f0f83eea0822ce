using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Train.Report;

/// <summary>
/// Every head's attention pattern (blocks.{l}.attn.hook_pattern) on one window of the evaluation data, for the
/// interactive view of report.html: real text when --data is text, the generated sequences when it is the
/// induction task (random tokens are that task's data). At most <see cref="MaxTokens"/> tokens, so the page of
/// a 12 × 12-head model stays a few hundred kB.
/// </summary>
/// <remarks>
/// Patterns are stored quantised to one byte, q = round(255·A[i, j]), and only for j ≤ i (causal: the rest is
/// 0), head after head, row after row: head k's row i starts at k·T(T+1)/2 + i(i+1)/2. The error is at most
/// 1/510 per weight, well below what a colour shows.
/// </remarks>
public sealed class AttentionWindow
{
    /// <summary>The most tokens the window shows: T(T+1)/2 bytes per head, 2,080 at 64.</summary>
    public const int MaxTokens = 64;

    public required int Layers { get; init; }
    public required int HeadsPerLayer { get; init; }
    public required int[] Tokens { get; init; }
    /// <summary>Which window of the data and where it starts, for the page ("window 3 of batch 0").</summary>
    public required string Where { get; init; }
    /// <summary>For the induction task: whether token i+1 is a predictable copy (the data's mask), else null.</summary>
    public bool[]? Predictable { get; init; }
    /// <summary>Quantised lower triangles, see the remarks.</summary>
    public required byte[] Patterns { get; init; }

    public int T => Tokens.Length;
    public static int TriangleSize(int t) => t * (t + 1) / 2;

    /// <summary>A[i, j] of head (layer, head) as stored (a multiple of 1/255), 0 above the diagonal.</summary>
    public double Weight(int layer, int head, int i, int j) =>
        j > i ? 0 : Patterns[(layer * HeadsPerLayer + head) * TriangleSize(T) + i * (i + 1) / 2 + j] / 255.0;

    /// <summary>
    /// The first window of the data's first batch, or for masked data (the induction task) the first whose first
    /// <see cref="MaxTokens"/> tokens hold a predictable copy, cut to MaxTokens, run through the model once.
    /// </summary>
    public static AttentionWindow Compute(GptModel model, EvalSet data)
    {
        var c = model.Config;
        var batch = data.Batches[0];
        int L = data.SeqLen, T = Math.Min(L, MaxTokens), rows = batch.Inputs.Length / L, pick = 0;
        if (batch.Mask is { } mask)
            for (int w = 0; w < rows; w++)
                if (Array.IndexOf(mask, true, w * L, T) >= 0) { pick = w; break; }
        var tokens = batch.Inputs.AsSpan(pick * L, T).ToArray();
        var cache = model.RunWithCache(tokens, 1, T, n => n.EndsWith(".attn.hook_pattern", StringComparison.Ordinal));
        int H = c.NHeads, tri = TriangleSize(T);
        var q = new byte[c.NLayers * H * tri];
        for (int l = 0; l < c.NLayers; l++)
        {
            var p = cache[$"blocks.{l}.attn.hook_pattern"].Span; // [1, H, T, T]
            for (int h = 0; h < H; h++)
                for (int i = 0, o = (l * H + h) * tri; i < T; i++)
                    for (int j = 0; j <= i; j++) q[o++] = (byte)Math.Round(255 * Math.Clamp(p[(h * T + i) * T + j], 0f, 1f));
        }
        return new AttentionWindow
        {
            Layers = c.NLayers, HeadsPerLayer = H, Tokens = tokens, Patterns = q,
            Where = $"window {pick} of the first batch, tokens 0–{T - 1}" + (T < L ? $" of {L}" : ""),
            Predictable = batch.Mask?.AsSpan(pick * L, T).ToArray(),
        };
    }
}

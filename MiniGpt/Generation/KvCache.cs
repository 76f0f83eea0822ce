using MiniGpt.Model;

namespace MiniGpt.Generation;

/// <summary>
/// Each layer's keys and values of the positions decoded so far, for one sequence (batch 1):
/// K[l], V[l] are [n_ctx, H, d_head], row p holding position p's k and v (hook_k / hook_v's layout for B = 1,
/// so a prefill copies a forward pass's activations straight in). <see cref="Length"/> rows are valid.
/// The keys were made from the positions' own W_pos rows, so the cache stays valid only while every position
/// keeps its index: once a window slides (see <see cref="Generator"/>), it has to be refilled.
/// Memory: 2·n_layers·n_ctx·d_model floats (75 MB for GPT-2 124M's 12 × 1024 × 768).
/// </summary>
public sealed class KvCache
{
    private readonly float[][] _k, _v;

    public int NCtx { get; }
    public int NHeads { get; }
    public int DHead { get; }

    /// <summary>Positions held, [0, n_ctx].</summary>
    public int Length { get; internal set; }

    public KvCache(ModelConfig c)
    {
        NCtx = c.NCtx;
        NHeads = c.NHeads;
        DHead = c.DHead;
        int perLayer = c.NLayers == 0 ? 0 : c.NCtx * c.NHeads * c.DHead;
        _k = new float[c.NLayers][];
        _v = new float[c.NLayers][];
        for (int l = 0; l < c.NLayers; l++) { _k[l] = new float[perLayer]; _v[l] = new float[perLayer]; }
    }

    private int Row => NHeads * DHead;

    /// <summary>Layer l's keys [n_ctx, H, d_head] (all rows; the first Length are valid).</summary>
    public Span<float> Keys(int layer) => _k[layer];

    /// <summary>Layer l's values [n_ctx, H, d_head].</summary>
    public Span<float> Values(int layer) => _v[layer];

    /// <summary>Position p's keys [H, d_head] in layer l, where the decoder writes them.</summary>
    public Span<float> KeyRow(int layer, int p) => _k[layer].AsSpan(p * Row, Row);

    /// <summary>Position p's values [H, d_head] in layer l.</summary>
    public Span<float> ValueRow(int layer, int p) => _v[layer].AsSpan(p * Row, Row);
}

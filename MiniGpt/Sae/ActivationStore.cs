using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Sae;

/// <summary>
/// Activations at one hook point, streamed: batches of windows are drawn from the data and run through the model,
/// the hook's rows (one per token; d_in = the width after [B, T], e.g. n_heads·d_head for hook_z) land in a buffer
/// of Capacity rows, and training reads them in shuffled order (SAELens's activation store). When half the buffer
/// has been read, that half is refilled with fresh activations and the whole buffer reshuffled, so consecutive
/// batches mix tokens of many windows and documents, and memory stays at Capacity·d_in floats for any corpus.
/// Deterministic for a seed.
/// </summary>
public sealed class ActivationStore
{
    private readonly GptModel _model;
    private readonly IBatchSource _data;
    private readonly string _hook;
    private readonly int _b, _t;
    private readonly int[] _inputs, _targets;
    private readonly float[] _buffer;
    private readonly int[] _order;
    private int _read;
    private Rng _dataRng, _shuffleRng;
    private readonly float[] _rows; // one batch of windows' activations, [B·T, d_in]
    private readonly HookFn _capture;

    public ActivationStore(GptModel model, IBatchSource data, string hook, int capacity, int windowsPerBatch, ulong seed)
    {
        _model = model;
        _data = data;
        _hook = hook;
        DIn = WidthOf(model, hook);
        _b = windowsPerBatch;
        _t = model.Config.NCtx;
        int perBatch = _b * _t;
        if (capacity < 2 * perBatch) capacity = 2 * perBatch;
        // rounded up to whole batches (so the first fill is exact, and the buffer never ends up below what was asked);
        // later refills may use only part of their last batch
        Capacity = (capacity + perBatch - 1) / perBatch * perBatch;
        _inputs = new int[perBatch];
        _targets = new int[perBatch];
        _buffer = new float[(long)Capacity * DIn <= int.MaxValue ? Capacity * DIn : throw new UserError($"an activation buffer of {Capacity:N0} × {DIn} floats is too large: lower --buffer")];
        _order = new int[Capacity];
        _dataRng = new Rng(seed);
        _shuffleRng = new Rng(seed ^ 0x5DEECE66DUL);
        _rows = new float[perBatch * DIn];
        _capture = (value, _) => value.Span.CopyTo(_rows);
        for (int i = 0; i < Capacity; i++) _order[i] = i;
        Refill(0, Capacity);
    }

    /// <summary>The activation's width at the hook (the product of its dimensions after batch and position).</summary>
    public int DIn { get; }
    public int Capacity { get; }
    /// <summary>Tokens run through the model so far.</summary>
    public long TokensSeen { get; private set; }

    /// <summary>d_in of a per-token hook point, or a one-line error naming the fix.</summary>
    public static int WidthOf(GptModel model, string hook)
    {
        var kind = model.HookShapeOf(hook) ?? throw new UserError(
            $"hook point '{hook}' is not in this model: use one of {string.Join(", ", model.HookNames.Where(n => model.HookShapeOf(n) is not HookShape.Attention and not HookShape.Logits).Take(12))}, …");
        if (kind == HookShape.Attention) throw new UserError($"'{hook}' holds attention scores [batch, head, query, key], not one vector per token: give a hook such as blocks.0.hook_resid_post");
        var shape = HookPoints.Shape(kind, model.Config, 1, 1);
        int d = 1;
        for (int i = 2; i < shape.Length; i++) d *= shape[i];
        return d;
    }

    /// <summary>Copies the next n rows (in the buffer's shuffled order) into dst [n, d_in]; refills half the buffer when half has been read.</summary>
    public void Next(Span<float> dst, int n)
    {
        if (n > Capacity / 2) throw new ArgumentException($"a batch of {n} rows is more than half the buffer ({Capacity})");
        if (_read + n > Capacity / 2)
        {
            // the rows read so far are spent: replace them with fresh activations, then mix everything again
            Refill(0, _read);
            _read = 0;
        }
        for (int i = 0; i < n; i++)
            _buffer.AsSpan(_order[_read + i] * DIn, DIn).CopyTo(dst.Slice(i * DIn, DIn));
        _read += n;
    }

    // refills the rows _order[from .. to) with fresh activations (the last batch of windows only partly used), then reshuffles the order
    private void Refill(int from, int to)
    {
        int perBatch = _b * _t;
        // the slots to refill (sorted, so the refill does not depend on the shuffle's order within them)
        var slots = _order.AsSpan(from, to - from);
        slots.Sort();
        int done = 0;
        using (_model.Hooks.AddForward(_hook, _capture))
            while (done < slots.Length)
            {
                _data.Sample(ref _dataRng, _inputs, _targets, _b, _t);
                _model.Forward(_inputs, default, _b, _t);
                TokensSeen += perBatch;
                int take = Math.Min(perBatch, slots.Length - done);
                for (int r = 0; r < take; r++) _rows.AsSpan(r * DIn, DIn).CopyTo(_buffer.AsSpan(slots[done + r] * DIn, DIn));
                done += take;
            }
        // Fisher–Yates over the whole order
        for (int i = Capacity - 1; i > 0; i--)
        {
            int j = _shuffleRng.NextInt(i + 1);
            (_order[i], _order[j]) = (_order[j], _order[i]);
        }
    }
}

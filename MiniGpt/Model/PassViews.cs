using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>
/// What Cache.Acts[name] hands out: a stored activation seen with the last pass's shape. The buffers are sized for the
/// largest pass ([rows, …] with rows = RowCapacity, and flat scores and pattern of at least B·H·T² floats), and a pass of
/// B sequences of T tokens writes their leading floats densely: row n = b·T + t of a [rows, …] buffer is [b, t, …], the
/// softmax statistics are [B, H, T] and the scores and pattern [B, H, T, T] for this B and T (not n_ctx). So the view is
/// the leading B·T·(…) floats with shape [B, T, …], [B, H, T] or [B, H, T, T], and row i of head h of the pattern is at
/// ((b·H + h)·T + i)·T, as in a fresh model that only ran this pass.
/// A view is made on the first lookup after a pass of a new shape and reused while the shape and buffer stay, so the
/// pass itself allocates nothing (it only records B and T, <see cref="Begin"/>).
/// </summary>
internal sealed class PassViews(int rowCapacity, int heads)
{
    private readonly Dictionary<string, Tensor> _views = new(StringComparer.Ordinal);

    /// <summary>The last pass's batch and length; 0 before the first pass (lookups then give the stored tensors).</summary>
    public int B { get; private set; }
    public int T { get; private set; }

    public void Begin(int b, int t)
    {
        B = b;
        T = t;
    }

    public Tensor View(Tensor stored)
    {
        if (B == 0) return stored;
        int[]? shape = ShapeOf(stored);
        if (shape == null) return stored;
        if (_views.TryGetValue(stored.Name, out var v) && v.Buffer == stored.Buffer && v.Offset == stored.Offset && v.Shape.AsSpan().SequenceEqual(shape))
            return v;
        return _views[stored.Name] = new Tensor(stored.Name, stored.Buffer, stored.Offset, shape);
    }

    // the pass's shape of a stored tensor, or null for one that is not per token (none in Acts today)
    private int[]? ShapeOf(Tensor stored)
    {
        string n = stored.Name;
        if (n.EndsWith(".attn.softmax_max", StringComparison.Ordinal) || n.EndsWith(".attn.softmax_sum", StringComparison.Ordinal)) return [B, heads, T];
        if (n.EndsWith(".attn.hook_pattern", StringComparison.Ordinal) || n.EndsWith(".attn.hook_attn_scores", StringComparison.Ordinal)) return [B, heads, T, T];
        if (stored.Rank == 0 || stored.Shape[0] != rowCapacity) return null;
        var shape = new int[stored.Rank + 1];
        shape[0] = B;
        shape[1] = T;
        stored.Shape.AsSpan(1).CopyTo(shape.AsSpan(2));
        return shape;
    }
}

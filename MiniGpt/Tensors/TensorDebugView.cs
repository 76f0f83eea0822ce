using System.Diagnostics;

namespace MiniGpt.Tensors;

/// <summary>
/// What a debugger shows when a tensor is expanded (its [DebuggerTypeProxy]); plain C#, so tests and examples call it too.
/// <see cref="Rows"/> are the slices along the leading dimension, each a tensor with its own one-line summary that expands
/// again ([B, T, D] → B tensors [T, D] → T rows [D] → values); <see cref="Heads"/> are the per-head slices of an attention
/// tensor: head h of a pattern or scores [B, H, T, T] is [T, T] (one sequence) or [B, T, T], of q, k, v, z [B, T, H, d_head]
/// (or hook_result [B, T, H, d_model]) [T, d] or [B, T, d]. At most <see cref="MaxItems"/> rows or values are listed.
/// </summary>
public sealed class TensorDebugView(Tensor t)
{
    /// <summary>Rows or values listed at most, so that expanding GPT-2's logits does not build 50,257 entries.</summary>
    public const int MaxItems = 256;

    /// <summary>Above this many floats the per-head slices (copies, for [B, T, H, d]) are not made.</summary>
    public const int MaxHeadCopy = 1 << 24;

    public string Name => t.Name;
    public int[] Shape => t.Shape;
    public string Summary => new TensorStats(t.Span).ToString();

    /// <summary>Slices along the leading dimension (the first MaxItems), null for a tensor of rank 0 or 1 (see <see cref="Values"/>).</summary>
    public Tensor[]? Rows
    {
        get
        {
            if (t.Rank < 2) return null;
            var rows = new Tensor[Math.Min(t.Shape[0], MaxItems)];
            for (int i = 0; i < rows.Length; i++) rows[i] = t.Slice(i);
            return rows;
        }
    }

    /// <summary>The values (the first MaxItems) of a tensor of rank 0 or 1, null above.</summary>
    public float[]? Values => t.Rank < 2 ? t.Span[..Math.Min(t.Length, MaxItems)].ToArray() : null;

    /// <summary>Per-head slices of an attention tensor ([B, H, T, T] or [B, T, H, d]), null for any other tensor or one too large to copy.</summary>
    [DebuggerBrowsable(DebuggerBrowsableState.Collapsed)]
    public Tensor[]? Heads
    {
        get
        {
            var layout = LayoutOf(t);
            if (layout == HeadLayout.None || t.Length > MaxHeadCopy) return null;
            int B = t.Shape[0];
            int H = layout == HeadLayout.HeadsFirst ? t.Shape[1] : t.Shape[2];
            int T = layout == HeadLayout.HeadsFirst ? t.Shape[2] : t.Shape[1];
            int inner = t.Shape[3]; // T (key positions) or d
            var heads = new Tensor[H];
            var src = t.Span;
            for (int h = 0; h < H; h++)
            {
                var dst = new float[(long)B * T * inner];
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < T; i++)
                    {
                        // [B, H, T, T]: row (b, h, i) starts at ((b·H + h)·T + i)·T;  [B, T, H, d]: at ((b·T + i)·H + h)·d
                        long from = layout == HeadLayout.HeadsFirst ? ((long)(b * H + h) * T + i) * inner : ((long)(b * T + i) * H + h) * inner;
                        src.Slice((int)from, inner).CopyTo(dst.AsSpan((b * T + i) * inner, inner));
                    }
                int[] shape = B == 1 ? [T, inner] : [B, T, inner];
                heads[h] = new Tensor($"{t.Name} head {h}", dst, 0, shape);
            }
            return heads;
        }
    }

    internal enum HeadLayout { None, HeadsFirst, TokensFirst }

    /// <summary>
    /// [B, H, T, T] for the scores and pattern (and their gradients), [B, T, H, d] for q, k, v, z and the per-head results
    /// (and theirs), by hook name; a rank-4 tensor of another name by its shape (last two dimensions equal: [B, H, T, T]).
    /// </summary>
    internal static HeadLayout LayoutOf(Tensor t)
    {
        if (t.Rank != 4) return HeadLayout.None;
        string n = t.Name;
        // hook names, the arena's gradient scratch (d_q, …) and the names Layers' DebugViews give their captures (q, dq, …)
        if (n.EndsWith("hook_pattern") || n.EndsWith("hook_attn_scores") || n.EndsWith("attn.softmax")
            || n is "d_pattern" or "d_scores" or "pattern" or "scores") return HeadLayout.HeadsFirst;
        if (n.EndsWith("hook_q") || n.EndsWith("hook_k") || n.EndsWith("hook_v") || n.EndsWith("hook_z") || n.EndsWith("hook_result")
            || n is "d_q" or "d_k" or "d_v" or "d_z" or "d_result" or "q" or "k" or "v" or "z" or "dq" or "dk" or "dv" or "dz") return HeadLayout.TokensFirst;
        return t.Shape[2] == t.Shape[3] ? HeadLayout.HeadsFirst : HeadLayout.TokensFirst;
    }
}

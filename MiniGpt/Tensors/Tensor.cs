using System.Diagnostics;
using System.Runtime.CompilerServices;
using CommunityToolkit.HighPerformance;

namespace MiniGpt.Tensors;

/// <summary>
/// A named float32 view into a large buffer (an arena), with a row-major shape.
/// Tensors never own memory: parameters, gradients and activations each live in one array and
/// every tensor is a window on it, as in llm.c. That is what makes caches and hooks nearly free.
/// </summary>
[DebuggerDisplay("{DebuggerText,nq}")]
[DebuggerTypeProxy(typeof(TensorDebugView))]
public sealed class Tensor
{
    public string Name { get; }
    public int[] Shape { get; }
    public float[] Buffer { get; }
    public int Offset { get; }
    public int Length { get; }

    public Tensor(string name, float[] buffer, int offset, params int[] shape)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"tensor {name}: negative dimension in shape [{string.Join(", ", shape)}]");
            n *= d;
        }
        if (n > int.MaxValue || offset < 0 || offset + n > buffer.Length)
            throw new ArgumentException($"tensor {name}: shape [{string.Join(", ", shape)}] at offset {offset} does not fit a buffer of {buffer.Length}");
        Name = name;
        Buffer = buffer;
        Offset = offset;
        Shape = shape;
        Length = (int)n;
    }

    /// <summary>A standalone tensor with its own storage (tests, tools; not for hot paths).</summary>
    public static Tensor Zeros(string name, params int[] shape)
    {
        long n = 1;
        foreach (int d in shape) n *= d;
        return new Tensor(name, new float[n], 0, shape);
    }

    public int Rank => Shape.Length;

    public Span<float> Span
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Buffer.AsSpan(Offset, Length);
    }

    public Memory<float> Memory => Buffer.AsMemory(Offset, Length);

    /// <summary>The last dimension as columns and everything before it as rows.</summary>
    public Span2D<float> AsSpan2D()
    {
        int cols = Rank == 0 ? 1 : Shape[^1];
        int rows = cols == 0 ? 0 : Length / cols;
        return new Span2D<float>(Buffer, Offset, rows, cols, 0);
    }

    public Span2D<float> AsSpan2D(int rows, int cols)
    {
        if ((long)rows * cols != Length) throw new ArgumentException($"tensor {Name}: cannot view {ShapeText} as [{rows}, {cols}]");
        return new Span2D<float>(Buffer, Offset, rows, cols, 0);
    }

    public float this[int i]
    {
        get => Span[i];
        set => Span[i] = value;
    }

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    public bool SameShape(Tensor other) => Shape.AsSpan().SequenceEqual(other.Shape);

    internal string DebuggerText
    {
        get
        {
            var s = Span;
            int show = Math.Min(6, s.Length);
            var parts = new string[show];
            for (int i = 0; i < show; i++) parts[i] = s[i].ToString("G5", System.Globalization.CultureInfo.InvariantCulture);
            return $"{Name} {ShapeText} {{{string.Join(", ", parts)}{(s.Length > show ? ", …" : "")}}}";
        }
    }

    public override string ToString() => DebuggerText;
}

/// <summary>What a debugger shows when a tensor is expanded: its shape and its rows (last dim as a row).</summary>
internal sealed class TensorDebugView
{
    private readonly Tensor _t;
    public TensorDebugView(Tensor t) => _t = t;

    public string Name => _t.Name;
    public int[] Shape => _t.Shape;

    [DebuggerBrowsable(DebuggerBrowsableState.RootHidden)]
    public float[][] Rows
    {
        get
        {
            var m = _t.AsSpan2D();
            int rows = (int)Math.Min(m.Height, 256);
            var result = new float[rows][];
            for (int r = 0; r < rows; r++) result[r] = m.GetRowSpan(r).ToArray();
            return result;
        }
    }
}

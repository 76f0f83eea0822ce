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

    /// <summary>
    /// The debugger's line for this tensor: name, shape, then min, max and mean of the finite values and the NaN and ±∞
    /// counts (<see cref="TensorStats"/>: at most 4 M values read, and it says when it sampled). A pattern's first six
    /// values, {1, 0, 0, 0, 0, 0, …}, said nothing; these say whether it is a distribution and whether anything blew up.
    /// </summary>
    public string DebuggerText => $"{Name} {ShapeText} {new TensorStats(Span)}";

    /// <summary>The slice at index i of the leading dimension, a view of shape Shape[1..] named name[i] (rank ≥ 1).</summary>
    public Tensor Slice(int i)
    {
        if (Rank == 0) throw new InvalidOperationException($"tensor {Name}: a scalar has no leading dimension to slice");
        if ((uint)i >= (uint)Shape[0]) throw new ArgumentOutOfRangeException(nameof(i), $"tensor {Name}: index {i} outside [0, {Shape[0]})");
        int inner = Shape[0] == 0 ? 0 : Length / Shape[0];
        return new Tensor($"{Name}[{i}]", Buffer, Offset + i * inner, Shape[1..]);
    }

    public override string ToString() => DebuggerText;
}

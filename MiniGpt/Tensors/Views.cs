using System.Runtime.InteropServices;
using CommunityToolkit.HighPerformance;

namespace MiniGpt.Tensors;

/// <summary>Short constructors for the 2-D views the layers pass to matmul (bounds checked here, once).</summary>
public static class Views
{
    /// <summary>span as a dense [rows, cols] matrix.</summary>
    public static Span2D<float> Mat(Span<float> s, int rows, int cols) => Cols(s, rows, cols, 0, cols);

    public static ReadOnlySpan2D<float> Mat(ReadOnlySpan<float> s, int rows, int cols) => Cols(s, rows, cols, 0, cols);

    /// <summary>Columns [col, col+cols) of a dense [rows, stride] matrix, e.g. one head inside [tokens, heads·d_head].</summary>
    public static Span2D<float> Cols(Span<float> s, int rows, int stride, int col, int cols)
    {
        Check(s.Length, rows, stride, col, cols);
        return rows == 0 || cols == 0 ? default : Span2D<float>.DangerousCreate(ref s[col], rows, cols, stride - cols);
    }

    public static ReadOnlySpan2D<float> Cols(ReadOnlySpan<float> s, int rows, int stride, int col, int cols)
    {
        Check(s.Length, rows, stride, col, cols);
        return rows == 0 || cols == 0 ? default : ReadOnlySpan2D<float>.DangerousCreate(in MemoryMarshal.GetReference(s[col..]), rows, cols, stride - cols);
    }

    private static void Check(int length, int rows, int stride, int col, int cols)
    {
        if (rows < 0 || cols < 0 || col < 0 || col + cols > stride || (rows > 0 && cols > 0 && (long)(rows - 1) * stride + col + cols > length))
            throw new ArgumentException($"view of [{rows}, {cols}] at column {col} with row stride {stride} does not fit {length} elements");
    }
}

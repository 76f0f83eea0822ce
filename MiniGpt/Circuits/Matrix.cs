using System.Globalization;
using System.Text;

namespace MiniGpt.Circuits;

/// <summary>
/// A small dense double-precision matrix, row-major: element (i, j) is Data[i·Cols + j].
/// The circuits code works in double because it takes QRs, SVDs and eigenvalues of products of
/// float32 weights, where float32 round-off would show in the small singular values.
/// </summary>
public sealed class Matrix
{
    public int Rows { get; }
    public int Cols { get; }
    public double[] Data { get; }

    public Matrix(int rows, int cols)
    {
        if (rows < 0 || cols < 0) throw new ArgumentException($"matrix shape [{rows}, {cols}] has a negative dimension");
        Rows = rows;
        Cols = cols;
        Data = new double[(long)rows * cols];
    }

    /// <summary>Wraps data (row-major, length rows·cols) without copying.</summary>
    public Matrix(int rows, int cols, double[] data)
    {
        if (data.Length != (long)rows * cols) throw new ArgumentException($"matrix [{rows}, {cols}] needs {rows * cols} values, got {data.Length}");
        Rows = rows;
        Cols = cols;
        Data = data;
    }

    public double this[int i, int j]
    {
        get => Data[i * Cols + j];
        set => Data[i * Cols + j] = value;
    }

    public Span<double> Row(int i) => Data.AsSpan(i * Cols, Cols);

    /// <summary>Whether every entry is a finite number (the analyses of a diverged model's weights meet NaN and ∞).</summary>
    public bool IsFinite()
    {
        foreach (double x in Data) if (!double.IsFinite(x)) return false;
        return true;
    }

    public static Matrix Identity(int n)
    {
        var m = new Matrix(n, n);
        for (int i = 0; i < n; i++) m[i, i] = 1;
        return m;
    }

    /// <summary>A float32 slice viewed as [rows, cols] (e.g. one head's W_Q[h] out of [n_heads, d_model, d_head]).</summary>
    public static Matrix FromFloats(ReadOnlySpan<float> values, int rows, int cols)
    {
        if (values.Length != rows * cols) throw new ArgumentException($"expected {rows * cols} values for [{rows}, {cols}], got {values.Length}");
        var m = new Matrix(rows, cols);
        for (int i = 0; i < values.Length; i++) m.Data[i] = values[i];
        return m;
    }

    /// <summary>A matrix with entries from a seeded standard normal (deterministic for a seed).</summary>
    public static Matrix RandomNormal(int rows, int cols, ref Rng rng, double std = 1.0)
    {
        var m = new Matrix(rows, cols);
        for (int i = 0; i < m.Data.Length; i++) m.Data[i] = rng.NextNormal() * std;
        return m;
    }

    public Matrix Clone() => new(Rows, Cols, (double[])Data.Clone());

    public Matrix Transpose() => LinearAlgebra.Transpose(this);

    /// <summary>‖M‖_F = √(Σ_ij M_ij²).</summary>
    public double FrobeniusNorm()
    {
        double s = 0;
        foreach (double v in Data) s += v * v;
        return Math.Sqrt(s);
    }

    /// <summary>max_ij |A_ij − B_ij| (for tests and checks).</summary>
    public static double MaxAbsDiff(Matrix a, Matrix b)
    {
        if (a.Rows != b.Rows || a.Cols != b.Cols) throw new ArgumentException($"shapes [{a.Rows}, {a.Cols}] and [{b.Rows}, {b.Cols}] differ");
        double m = 0;
        for (int i = 0; i < a.Data.Length; i++) m = Math.Max(m, Math.Abs(a.Data[i] - b.Data[i]));
        return m;
    }

    public double MaxAbs()
    {
        double m = 0;
        foreach (double v in Data) m = Math.Max(m, Math.Abs(v));
        return m;
    }

    public override string ToString()
    {
        var sb = new StringBuilder($"Matrix [{Rows}, {Cols}]");
        int rows = Math.Min(Rows, 6), cols = Math.Min(Cols, 6);
        for (int i = 0; i < rows; i++)
        {
            sb.Append("\n  ");
            for (int j = 0; j < cols; j++) sb.Append(this[i, j].ToString("G5", CultureInfo.InvariantCulture)).Append(' ');
            if (cols < Cols) sb.Append('…');
        }
        if (rows < Rows) sb.Append("\n  …");
        return sb.ToString();
    }
}

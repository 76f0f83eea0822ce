using System.Diagnostics;

namespace MiniGpt.Tensors;

/// <summary>
/// Named, shaped copies of a layer call's inputs (taken on entry) and outputs (taken on exit), for the locals window at a
/// breakpoint inside a Layers/*.Backward, where the arguments are bare spans. Each Backward declares
/// <c>DebugViews? views = null;</c> and calls <see cref="In"/> and <see cref="Out"/>, which are [Conditional("DEBUG")]: in a
/// Release build the compiler drops the calls with their arguments, so nothing is copied or allocated and the null local is
/// all that remains (the training step stays at 0 B). In a Debug build the local shows "in x [N, I], W [I, O], dy [N, O] |
/// out dx [N, I], …" and expands into the tensors, each with its summary line and rows (<see cref="TensorDebugView"/>).
/// They are copies, so a view shows the values at entry or exit, not later writes; <see cref="Add"/> is the same capture
/// in any build (tests call it).
/// </summary>
[DebuggerDisplay("{Text,nq}")]
[DebuggerTypeProxy(typeof(Proxy))]
public sealed class DebugViews
{
    private readonly List<Tensor> _tensors = new();
    private readonly List<bool> _isOutput = new();

    public IReadOnlyList<Tensor> Tensors => _tensors;

    /// <summary>The input's or output's view by name (an output taken under the name of an input replaces it in the lookup).</summary>
    public Tensor this[string name]
    {
        get
        {
            for (int i = _tensors.Count - 1; i >= 0; i--) if (_tensors[i].Name == name) return _tensors[i];
            throw new KeyNotFoundException($"no view named '{name}': there are {string.Join(", ", _tensors.Select(t => t.Name))}");
        }
    }

    public bool IsOutput(int i) => _isOutput[i];

    /// <summary>"in x [6, 16], dy [6, 32] | out dx [6, 16]".</summary>
    public string Text
    {
        get
        {
            string Of(bool output) => string.Join(", ", _tensors.Where((_, i) => _isOutput[i] == output).Select(t => $"{t.Name} {t.ShapeText}"));
            return $"in {Of(false)} | out {Of(true)}";
        }
    }

    public override string ToString() => Text;

    /// <summary>Debug builds: a copy of an input, values[..Π shape] with that shape (an empty span, an absent optional input, is skipped).</summary>
    [Conditional("DEBUG")]
    public static void In(ref DebugViews? views, string name, ReadOnlySpan<float> values, params int[] shape) => Add(ref views, name, values, shape, output: false);

    /// <summary>Debug builds: a copy of an output as it is on exit.</summary>
    [Conditional("DEBUG")]
    public static void Out(ref DebugViews? views, string name, ReadOnlySpan<float> values, params int[] shape) => Add(ref views, name, values, shape, output: true);

    /// <summary>
    /// Debug builds: rows of cols floats every stride floats (one head inside [T, H·d_head]) as a dense [rows, cols] copy.
    /// </summary>
    [Conditional("DEBUG")]
    public static void InStrided(ref DebugViews? views, string name, ReadOnlySpan<float> values, int rows, int stride, int cols) =>
        AddStrided(ref views, name, values, rows, stride, cols, output: false);

    [Conditional("DEBUG")]
    public static void OutStrided(ref DebugViews? views, string name, ReadOnlySpan<float> values, int rows, int stride, int cols) =>
        AddStrided(ref views, name, values, rows, stride, cols, output: true);

    /// <summary>What <see cref="In"/> and <see cref="Out"/> do, in any build.</summary>
    public static void Add(ref DebugViews? views, string name, ReadOnlySpan<float> values, int[] shape, bool output)
    {
        if (values.IsEmpty) return;
        long n = 1;
        foreach (int d in shape) n *= d;
        // a debugging aid must not stop the program it inspects: a span shorter than the shape is shown flat, and says so
        var t = n <= values.Length ? new Tensor(name, values[..(int)n].ToArray(), 0, shape)
            : new Tensor($"{name} (flat: [{string.Join(", ", shape)}] needs {n} floats)", values.ToArray(), 0, values.Length);
        Made(ref views).Append(t, output);
    }

    /// <summary>The views the last capture on this thread added to (tests read it; only captures set it, so never in Release).</summary>
    [ThreadStatic] internal static DebugViews? Last;

    private static DebugViews Made(ref DebugViews? views) => Last = views ??= new DebugViews();

    private void Append(Tensor t, bool output)
    {
        _tensors.Add(t);
        _isOutput.Add(output);
    }

    /// <summary>What <see cref="InStrided"/> and <see cref="OutStrided"/> do, in any build.</summary>
    public static void AddStrided(ref DebugViews? views, string name, ReadOnlySpan<float> values, int rows, int stride, int cols, bool output)
    {
        if (values.IsEmpty || rows == 0) return;
        if ((long)(rows - 1) * stride + cols > values.Length)
        {
            Add(ref views, $"{name} ({rows} rows of {cols} every {stride} do not fit)", values, [values.Length], output);
            return;
        }
        var dense = new float[rows * cols];
        for (int r = 0; r < rows; r++) values.Slice(r * stride, cols).CopyTo(dense.AsSpan(r * cols, cols));
        Made(ref views).Append(new Tensor(name, dense, 0, rows, cols), output);
    }

    private sealed class Proxy(DebugViews v)
    {
        [DebuggerBrowsable(DebuggerBrowsableState.RootHidden)]
        public Tensor[] Tensors => [.. v._tensors];
    }
}

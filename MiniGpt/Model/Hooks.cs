using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>Where a hook fired: the hook name (TransformerLens's), the block (−1 outside blocks) and the pass's shape.</summary>
public readonly record struct HookPoint(string Name, int Layer, int Batch, int SeqLen);

/// <summary>
/// A hook sees the activation (forward) or its gradient (backward) at its point as a tensor view with the
/// shape of this pass, e.g. [batch, pos, head, d_head] for attn.hook_q. Writing into it replaces the value
/// for everything that follows: in forward, every later stage reads the replacement (ablation, patching);
/// in backward, the replaced gradient is what flows on to the parameters and points upstream, as a
/// TransformerLens backward hook that returns a new gradient. Reading changes nothing, not even a bit.
/// </summary>
public delegate void HookFn(Tensor value, HookPoint point);

/// <summary>
/// Forward and backward hooks by hook name. A pass asks it, at each point, whether anything is
/// registered there (an array lookup); with nothing registered the model runs its fused kernels at full
/// speed and allocates nothing.
/// </summary>
public sealed class HookRegistry
{
    private readonly HookPoints _points;
    // per point, the hooks in the order they were added; replaced (not changed) when one is added or removed,
    // so a pass iterates over its own snapshot without copying
    private readonly HookFn[]?[] _forward, _backward;
    private int _count;
    // bumped by Clear, so that a handle from before it removes nothing (not a later registration of the same delegate)
    private int _generation;

    internal HookRegistry(HookPoints points)
    {
        _points = points;
        _forward = new HookFn[]?[points.Count];
        _backward = new HookFn[]?[points.Count];
    }

    public bool IsEmpty => _count == 0;
    public bool HasForward(string name) => _points.IndexOf(name) is int i and >= 0 && _forward[i] != null;
    public bool HasBackward(string name) => _points.IndexOf(name) is int i and >= 0 && _backward[i] != null;
    internal bool HasForward(int point) => point >= 0 && _forward[point] != null;
    internal bool HasBackward(int point) => point >= 0 && _backward[point] != null;

    /// <summary>Adds a forward hook; dispose the result to remove it.</summary>
    public IDisposable AddForward(string name, HookFn fn) => Add(_forward, name, fn);

    /// <summary>Adds a backward hook (sees d loss / d activation during Backward and may replace it); dispose the result to remove it.</summary>
    public IDisposable AddBackward(string name, HookFn fn) => Add(_backward, name, fn);

    public void Clear()
    {
        Array.Clear(_forward);
        Array.Clear(_backward);
        _count = 0;
        _generation++;
    }

    private IDisposable Add(HookFn[]?[] table, string name, HookFn fn)
    {
        int point = _points.IndexOf(name);
        if (point < 0) throw new ArgumentException($"'{name}' is not a hook point of this model (see GptModel.HookNames)");
        table[point] = [.. table[point] ?? [], fn];
        _count++;
        int generation = _generation;
        return new Removal(() =>
        {
            if (generation != _generation) return; // Clear removed it already
            var hooks = table[point];
            int i = hooks == null ? -1 : Array.IndexOf(hooks, fn);
            if (i < 0) return;
            table[point] = hooks!.Length == 1 ? null : [.. hooks[..i], .. hooks[(i + 1)..]];
            _count--;
        });
    }

    internal void RunForward(int point, Tensor t, HookPoint p) { foreach (var f in _forward[point] ?? []) f(t, p); }
    internal void RunBackward(int point, Tensor t, HookPoint p) { foreach (var f in _backward[point] ?? []) f(t, p); }

    private sealed class Removal(Action remove) : IDisposable
    {
        private Action? _remove = remove;
        public void Dispose() { _remove?.Invoke(); _remove = null; }
    }
}

/// <summary>Copies of the activations of one forward pass, by hook name (TransformerLens's ActivationCache).</summary>
public sealed class ActivationCache
{
    private readonly Dictionary<string, Tensor> _t = new(StringComparer.Ordinal);
    public IReadOnlyCollection<string> Names => _t.Keys;
    public Tensor this[string name] => _t.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"'{name}' is not in this cache");
    public bool Contains(string name) => _t.ContainsKey(name);
    internal void Add(Tensor t) => _t[t.Name] = t;
}

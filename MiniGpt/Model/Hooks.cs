namespace MiniGpt.Model;

/// <summary>Where a hook fired: the hook name (TransformerLens's), the block (−1 outside blocks) and the pass's shape.</summary>
public readonly record struct HookPoint(string Name, int Layer, int Batch, int SeqLen);

/// <summary>
/// A hook sees the activation (forward) or its gradient (backward) as a tensor view with the shape of
/// this pass, e.g. [batch, pos, head, d_head] for attn.hook_q. Writing into it replaces the value for
/// everything downstream (ablation, patching); reading it is free, since nothing is copied.
/// </summary>
public delegate void HookFn(Tensor value, HookPoint point);

/// <summary>
/// Forward and backward hooks by hook name. With none registered, the model does not build a single
/// view or name, and runs at full speed with no allocation.
/// </summary>
public sealed class HookRegistry
{
    private readonly Dictionary<string, List<HookFn>> _forward = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<HookFn>> _backward = new(StringComparer.Ordinal);
    private readonly Func<string, bool> _isValid;

    internal HookRegistry(Func<string, bool> isValid) => _isValid = isValid;

    public bool IsEmpty => _forward.Count == 0 && _backward.Count == 0;
    public bool HasForward(string name) => _forward.ContainsKey(name);
    public bool HasBackward(string name) => _backward.ContainsKey(name);
    public bool AnyBackward => _backward.Count > 0;

    /// <summary>Adds a forward hook; dispose the result to remove it.</summary>
    public IDisposable AddForward(string name, HookFn fn) => Add(_forward, name, fn);

    /// <summary>Adds a backward hook (sees d loss / d activation during Backward); dispose the result to remove it.</summary>
    public IDisposable AddBackward(string name, HookFn fn) => Add(_backward, name, fn);

    public void Clear() { _forward.Clear(); _backward.Clear(); }

    private IDisposable Add(Dictionary<string, List<HookFn>> d, string name, HookFn fn)
    {
        if (!_isValid(name)) throw new ArgumentException($"'{name}' is not a hook point of this model (see GptModel.HookNames)");
        if (!d.TryGetValue(name, out var list)) d[name] = list = new List<HookFn>();
        list.Add(fn);
        return new Removal(() => { list.Remove(fn); if (list.Count == 0) d.Remove(name); });
    }

    internal void RunForward(string name, Tensor t, HookPoint p) { if (_forward.TryGetValue(name, out var l)) foreach (var f in l.ToArray()) f(t, p); }
    internal void RunBackward(string name, Tensor t, HookPoint p) { if (_backward.TryGetValue(name, out var l)) foreach (var f in l.ToArray()) f(t, p); }

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

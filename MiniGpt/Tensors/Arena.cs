namespace MiniGpt.Tensors;

/// <summary>
/// One flat float array carved into named tensors, laid out in the order they were declared.
/// Declare every tensor first (<see cref="Add"/>), then <see cref="Build"/> allocates once.
/// A name may also stand for a tensor outside the array that its owner makes only when needed (<see cref="AddOnDemand"/>).
/// </summary>
[System.Diagnostics.DebuggerDisplay("{Names.Count} tensors")]
[System.Diagnostics.DebuggerTypeProxy(typeof(ArenaDebugView))]
public sealed class Arena
{
    private readonly List<(string Name, int[] Shape)> _pending = new();
    private readonly List<(string Name, string Target)> _aliases = new();
    private readonly List<Tensor> _tensors = new();
    private readonly Dictionary<string, Tensor> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OnDemand> _onDemand = new(StringComparer.Ordinal);
    private float[]? _buffer;

    /// <summary>
    /// A name of the arena whose tensor lives outside <see cref="Buffer"/> and exists only while its owner sets
    /// <see cref="Tensor"/> (attention's scores and pattern, which the tiled path does not write). While it is null, the
    /// indexer throws a KeyNotFoundException whose message is <see cref="Absent"/>: the owner's one-line account of why
    /// and how to get the tensor. Not in <see cref="Tensors"/>.
    /// </summary>
    public sealed class OnDemand(string absent)
    {
        public Tensor? Tensor { get; set; }
        public string Absent { get; } = absent;
    }

    /// <summary>Declares an on-demand name (before or after <see cref="Build"/>); its tensor starts absent.</summary>
    public OnDemand AddOnDemand(string name, string absent)
    {
        var slot = new OnDemand(absent);
        _onDemand.Add(name, slot);
        return slot;
    }

    /// <summary>Names and shapes in declaration order, available before <see cref="Build"/> allocates.</summary>
    public IReadOnlyList<(string Name, int[] Shape)> Declarations => _pending;

    public float[] Buffer => _buffer ?? throw new InvalidOperationException("arena not built");
    internal bool IsBuilt => _buffer != null;
    public IReadOnlyList<Tensor> Tensors => _tensors;

    public void Add(string name, params int[] shape)
    {
        if (_buffer != null) throw new InvalidOperationException("arena already built");
        _pending.Add((name, shape));
    }

    /// <summary>A second name for a tensor declared earlier (e.g. blocks.1.hook_resid_pre is blocks.0.hook_resid_post).</summary>
    public void AddAlias(string name, string target) => _aliases.Add((name, target));

    public long CountElements()
    {
        long n = 0;
        foreach (var (_, shape) in _pending)
        {
            long m = 1;
            foreach (int d in shape) m *= d;
            n += m;
        }
        return n;
    }

    public Arena Build()
    {
        long total = CountElements();
        if (total > Array.MaxLength) throw new UserError($"this needs {total:N0} floats in one buffer, more than .NET can allocate: use a smaller batch, n_ctx or model");
        _buffer = new float[total];
        int offset = 0;
        foreach (var (name, shape) in _pending)
        {
            var t = new Tensor(name, _buffer, offset, shape);
            _tensors.Add(t);
            _byName.Add(name, t);
            offset += t.Length;
        }
        foreach (var (name, target) in _aliases)
        {
            var t = this[target];
            _byName.Add(name, new Tensor(name, _buffer, t.Offset, t.Shape));
        }
        return this;
    }

    /// <summary>
    /// What a lookup by name returns in place of the stored tensor, once set (null: the stored tensor itself). Activations
    /// sets it so that Cache.Acts[name] is a view with the last pass's shape ([B, T, …]) on the leading part of a buffer
    /// sized for the largest pass; <see cref="Tensors"/> and the typed views taken before it was set keep the stored shapes.
    /// </summary>
    internal Func<Tensor, Tensor>? Viewer { get; set; }

    public Tensor this[string name] => Show(
        _byName.TryGetValue(name, out var t) ? t
        : _onDemand.TryGetValue(name, out var slot) ? slot.Tensor ?? throw new KeyNotFoundException(slot.Absent)
        : throw new KeyNotFoundException($"no tensor named '{name}'"));

    public bool TryGet(string name, out Tensor tensor)
    {
        if (!_byName.TryGetValue(name, out tensor!)) tensor = (_onDemand.TryGetValue(name, out var slot) ? slot.Tensor : null)!;
        if (tensor == null) return false;
        tensor = Show(tensor);
        return true;
    }

    private Tensor Show(Tensor stored) => Viewer is { } v ? v(stored) : stored;

    public bool Contains(string name) => TryGet(name, out _);

    /// <summary>Every name a lookup answers, in declaration order: the tensors, then the aliases, then the on-demand names that are present.</summary>
    public IReadOnlyList<string> Names
    {
        get
        {
            var names = new List<string>(_tensors.Count + _aliases.Count + _onDemand.Count);
            foreach (var t in _tensors) names.Add(t.Name);
            foreach (var (name, _) in _aliases) names.Add(name);
            foreach (var (name, slot) in _onDemand) if (slot.Tensor != null) names.Add(name);
            return names;
        }
    }
}

/// <summary>
/// What a debugger shows when an arena is expanded: every tensor as a lookup by name gives it, so model.Cache.Acts lists
/// the last pass's [B, T, …] views (and the patterns that pass kept), each with its summary line.
/// </summary>
internal sealed class ArenaDebugView(Arena a)
{
    [System.Diagnostics.DebuggerBrowsable(System.Diagnostics.DebuggerBrowsableState.RootHidden)]
    public Tensor[] Tensors => a.IsBuilt ? a.Names.Select(n => a[n]).ToArray() : [];
}

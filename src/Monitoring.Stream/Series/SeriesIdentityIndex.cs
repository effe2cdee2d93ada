using System.Numerics;
using System.Runtime.CompilerServices;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Series;

/// <summary>
/// A cache in front of the registry's table for the common case of callers that pass the same string
/// objects on every call (literals, route templates, strings cached by the caller): a series is found
/// from the identity of its metric and label strings, without reading or hashing their characters.
/// </summary>
/// <remarks>
/// <para>PERF: resolving labels by value hashes every character and compares every character of a hit:
/// about 100 ns a call at 1,000 series, and at 100,000 series each call misses the caches on the string
/// objects as well as on the table. Here a call hashes the strings' current addresses, loads one slot
/// and compares references.</para>
/// <para>A slot holds, inline, what a hit needs: for a series of at most <see cref="InlineValues"/> labels,
/// its label values' references and a <see cref="Shape"/> shared by the series of its metric with the same
/// name objects (the metric and the label names' references), its id and a tag of the hash; a hit loads the
/// slot, and the shape, which the series of a metric share and so stays in the cache. A series of more
/// labels, or whose names are not its metric's shape's, keeps its label array in the slot instead, and a hit
/// loads that array too. A lookup compares the caller's metric and labels, in the caller's order, with the
/// slot's, reference by reference, so a hit is always the right series; a miss (other string objects with
/// the same text, another label order, a slot taken by another series, or objects the GC has moved since
/// their slot was chosen) falls back to the lookup by value, which puts the series back here when the
/// caller's strings are the series' own.</para>
/// <para>PERF: at 100,000 series the label array was a cache miss of its own on every hit, after the slot's
/// and dependent on it: about 90 ns of a labelled write's 330 ns of CPU (docs/benchmarks.md, session 10).</para>
/// <para>A series has at most one slot (it remembers which; none when its window of slots is full), and every change happens under the
/// registry's lock: a reclaimed series' slot is cleared as it is unlisted, so a hit is never a series
/// reclaimed before the lookup began; one that races with the reclaim yields the old generation's id,
/// which the shard refuses as stale (and counts), as it does for an id looked up by value just before.</para>
/// <para>Slots are read without a lock: each has a version, odd while it is being written and read before
/// and after the fields, so a reader never pairs one series' labels with another's id. The array is
/// replaced, never resized in place.</para>
/// </remarks>
internal sealed class SeriesIdentityIndex
{
    /// <summary>Slots probed from the hashed one (a hit is usually the first: only tags are compared on the way).</summary>
    private const int Probe = 8;

    private const int MinSlots = 256;

    /// <summary>Label values a slot holds inline: series of more labels keep their label array in the slot.</summary>
    internal const int InlineValues = 3;

    /// <summary>
    /// Shapes kept at most: callers that build a new metric or label-name string for each series would
    /// otherwise add one per series. Beyond it a series keeps its label array in the slot.
    /// </summary>
    internal const int MaxShapes = 1024;

    /// <summary><see cref="SeriesDescriptor.IdentitySlot"/> of a series whose window was full.</summary>
    private const int NoRoom = -2;

    /// <summary>Slots freed before a series that found no room tries again: a lock now and then, not per call.</summary>
    private const int RetryAfterFrees = 16;

    private int _frees;

    /// <summary>The shapes by the identity of their metric and name objects (changed under the registry's lock).</summary>
    private readonly Dictionary<ShapeKey, Shape> _shapes = [];

    private readonly int _owner;
    private Slot[] _slots = new Slot[MinSlots];

    /// <summary>An index for the registry whose ids carry <paramref name="owner"/>.</summary>
    public SeriesIdentityIndex(int owner)
    {
        _owner = owner;
    }

    /// <summary>Bytes of the slot array.</summary>
    public long Bytes => (long)Volatile.Read(ref _slots).Length * Unsafe.SizeOf<Slot>();

    /// <summary>Finds the series whose metric and labels are these very objects, in this order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryFind(string metric, ReadOnlySpan<Label> labels, out SeriesId id)
    {
        Slot[] slots = Volatile.Read(ref _slots);
        int mask = slots.Length - 1;
        uint hash = Hash(metric, labels);
        int tag = Tag(hash);
        int start = (int)hash & mask;
        for (int p = 0; p < Probe; p++)
        {
            ref Slot slot = ref slots[(start + p) & mask];
            int version = Volatile.Read(ref slot.Version);
            // PERF: the tag sits in the slot: a probe past another series costs no miss.
            if (Volatile.Read(ref slot.Tag) == tag && Matches(ref slot, metric, labels))
            {
                int value = Volatile.Read(ref slot.Value);
                int generation = Volatile.Read(ref slot.Generation);
                if ((version & 1) == 0 && Volatile.Read(ref slot.Version) == version)
                {
                    id = new SeriesId(value, _owner, generation);
                    return true;
                }
            }
        }

        id = default;
        return false;
    }

    /// <summary>Whether the slot holds these very objects: read field by field, checked by the caller's second read of the version.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Matches(ref Slot slot, string metric, ReadOnlySpan<Label> labels)
    {
        object? key = Volatile.Read(ref slot.Key);
        if (key is Shape shape)
        {
            if (!ReferenceEquals(shape.Metric, metric) || shape.Count != labels.Length)
            {
                return false;
            }

            // Names from the shared shape, values from the slot: no load past the slot's line but the shape's.
            return labels.Length switch
            {
                0 => true,
                1 => ReferenceEquals(shape.Name0, labels[0].Name) && ReferenceEquals(Volatile.Read(ref slot.Value0), labels[0].Value),
                2 => ReferenceEquals(shape.Name0, labels[0].Name) && ReferenceEquals(Volatile.Read(ref slot.Value0), labels[0].Value)
                    && ReferenceEquals(shape.Name1, labels[1].Name) && ReferenceEquals(Volatile.Read(ref slot.Value1), labels[1].Value),
                _ => ReferenceEquals(shape.Name0, labels[0].Name) && ReferenceEquals(Volatile.Read(ref slot.Value0), labels[0].Value)
                    && ReferenceEquals(shape.Name1, labels[1].Name) && ReferenceEquals(Volatile.Read(ref slot.Value1), labels[1].Value)
                    && ReferenceEquals(shape.Name2, labels[2].Name) && ReferenceEquals(Volatile.Read(ref slot.Value2), labels[2].Value),
            };
        }

        // A series kept with its label array: the metric in the first value's place.
        return key is Label[] stored && ReferenceEquals(Volatile.Read(ref slot.Value0), metric) && SameLabels(stored, labels);
    }

    /// <summary>
    /// Holding the registry's lock: remembers <paramref name="descriptor"/> for callers passing exactly
    /// <paramref name="labels"/> (the descriptor's own objects in its own order), in its hashed window (a free
    /// slot, else the hashed one), and frees the slot it had before (objects moved by the GC hash elsewhere).
    /// </summary>
    public void RememberLocked(SeriesDescriptor descriptor, string metric, ReadOnlySpan<Label> labels)
    {
        if (!ReferenceEquals(descriptor.Metric, metric) || !SameLabels(descriptor.CanonicalLabels, labels))
        {
            return;
        }

        Slot[] slots = _slots;
        int mask = slots.Length - 1;
        uint hash = Hash(metric, labels);
        int start = (int)hash & mask;
        int target = -1;
        for (int p = 0; p < Probe; p++)
        {
            int i = (start + p) & mask;
            if (slots[i].Key is null || IsOwnedBy(ref slots[i], descriptor))
            {
                target = i;
                break;
            }
        }

        ForgetLocked(descriptor);
        if (target < 0)
        {
            // The window is full: this series is answered by value until the array grows. Not evicting
            // another keeps two series of one window from taking each other's slot on every call.
            descriptor.IdentitySlot = NoRoom;
            descriptor.IdentityFreesSeen = _frees;
            return;
        }

        object key;
        string? value0, value1 = null, value2 = null;
        if (ShapeOfLocked(metric, labels) is { } shape)
        {
            key = shape;
            value0 = labels.Length > 0 ? labels[0].Value : null;
            value1 = labels.Length > 1 ? labels[1].Value : null;
            value2 = labels.Length > 2 ? labels[2].Value : null;
        }
        else
        {
            key = descriptor.CanonicalLabels;
            value0 = metric;
        }

        ref Slot slot = ref slots[target];
        Volatile.Write(ref slot.Version, slot.Version + 1);
        Volatile.Write(ref slot.Tag, Tag(hash));
        Volatile.Write(ref slot.Key, key);
        Volatile.Write(ref slot.Value0, value0);
        Volatile.Write(ref slot.Value1, value1);
        Volatile.Write(ref slot.Value2, value2);
        Volatile.Write(ref slot.Value, descriptor.Id.Value);
        Volatile.Write(ref slot.Generation, descriptor.Id.Generation);
        Volatile.Write(ref slot.Version, slot.Version + 1);
        descriptor.IdentitySlot = target;
        Indexed++;
    }

    /// <summary>Holding the registry's lock: the descriptor's slot, if it has one, is emptied (the series is reclaimed).</summary>
    public void ForgetLocked(SeriesDescriptor descriptor)
    {
        int i = descriptor.IdentitySlot;
        descriptor.IdentitySlot = -1;
        Slot[] slots = _slots;
        if ((uint)i < (uint)slots.Length && IsOwnedBy(ref slots[i], descriptor))
        {
            ref Slot slot = ref slots[i];
            Volatile.Write(ref slot.Version, slot.Version + 1);
            Volatile.Write(ref slot.Tag, 0);
            Volatile.Write(ref slot.Key, null);
            Volatile.Write(ref slot.Value0, null);
            Volatile.Write(ref slot.Value1, null);
            Volatile.Write(ref slot.Value2, null);
            Volatile.Write(ref slot.Version, slot.Version + 1);
            Indexed--;
            Volatile.Write(ref _frees, _frees + 1);
        }
    }

    /// <summary>Series in the index now (a series whose window was full is answered by value instead).</summary>
    public int Indexed { get; private set; }

    /// <summary>
    /// Whether the series found no free slot in its window and too few slots have been freed since to try
    /// again (after the GC moves strings, series leave their old slots as they are placed again).
    /// </summary>
    public bool HasNoRoom(SeriesDescriptor descriptor) =>
        descriptor.IdentitySlot == NoRoom && Volatile.Read(ref _frees) - descriptor.IdentityFreesSeen < RetryAfterFrees;

    /// <summary>An id is never issued to two series (a reused index gets a new generation), so the id tells the owner.</summary>
    private static bool IsOwnedBy(ref Slot slot, SeriesDescriptor descriptor) =>
        slot.Key is not null && slot.Value == descriptor.Id.Value && slot.Generation == descriptor.Id.Generation;

    /// <summary>
    /// Holding the registry's lock: the shape of a series of at most <see cref="InlineValues"/> labels with
    /// these metric and name objects, made on first sight; null for more labels, or when
    /// <see cref="MaxShapes"/> are kept and none is these objects'.
    /// </summary>
    private Shape? ShapeOfLocked(string metric, ReadOnlySpan<Label> labels)
    {
        if (labels.Length > InlineValues)
        {
            return null;
        }

        var key = new ShapeKey(metric, labels.Length > 0 ? labels[0].Name : null, labels.Length > 1 ? labels[1].Name : null, labels.Length > 2 ? labels[2].Name : null, labels.Length);
        if (_shapes.TryGetValue(key, out Shape? shape))
        {
            return shape;
        }

        if (_shapes.Count >= MaxShapes)
        {
            return null;
        }

        shape = new Shape(metric, key.Name0, key.Name1, key.Name2, labels.Length);
        _shapes.Add(key, shape);
        return shape;
    }

    /// <summary>Shapes kept (at most <see cref="MaxShapes"/>).</summary>
    internal int Shapes => _shapes.Count;

    /// <summary>Holding the registry's lock: grows the array for <paramref name="series"/> live series.</summary>
    /// <param name="series">Series now in the registry.</param>
    /// <param name="all">The registry's descriptors by index, to place again in the new array.</param>
    /// <param name="count">Indexes issued.</param>
    public void EnsureCapacityLocked(int series, SeriesDescriptor?[] all, int count)
    {
        // PERF: up to 0.8 of the slots in use, 48 bytes a slot: 60 to 120 bytes per live series (memory per
        // series is a target of its own); eight probes keep almost every series in its window at that load.
        if (series <= _slots.Length / 5 * 4)
        {
            return;
        }

        var grown = new Slot[(int)Math.Min(BitOperations.RoundUpToPowerOf2((uint)(series + (series / 4) + 1)), 1u << 28)];
        for (int i = 0; i < count; i++)
        {
            if (all[i] is { } d)
            {
                d.IdentitySlot = -1;
            }
        }

        // Readers keep the old array until they see the new one: both only ever hold right answers.
        Volatile.Write(ref _slots, grown);
        Indexed = 0;
        for (int i = 0; i < count; i++)
        {
            if (all[i] is { IsUnlisted: false, IsOverflow: false } d)
            {
                RememberLocked(d, d.Metric, d.CanonicalLabels);
            }
        }
    }

    /// <summary>A tag that is never 0, so an empty slot never matches.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Tag(uint hash) => (int)(hash | 1);

    /// <summary>Whether <paramref name="labels"/> are the very objects of <paramref name="stored"/>, in the same order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool SameLabels(Label[] stored, ReadOnlySpan<Label> labels)
    {
        if (stored.Length != labels.Length)
        {
            return false;
        }

        for (int i = 0; i < stored.Length; i++)
        {
            if (!ReferenceEquals(stored[i].Name, labels[i].Name) || !ReferenceEquals(stored[i].Value, labels[i].Value))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A hash of the objects' current addresses (used as numbers only, never dereferenced).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Hash(string metric, ReadOnlySpan<Label> labels)
    {
        ulong h = Address(metric);
        for (int i = 0; i < labels.Length; i++)
        {
            h = ((h ^ Address(labels[i].Name)) * 0x9E3779B97F4A7C15UL) ^ Address(labels[i].Value);
        }

        h *= 0xD6E8FEB86659FD93UL;
        h ^= h >> 29;
        return (uint)(h >> 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Address(string? s) => (ulong)Unsafe.As<string?, nint>(ref s);

    /// <summary>
    /// One series' identity, inline (48 bytes): <see cref="Key"/> is its <see cref="Shape"/> with the label
    /// values in <see cref="Value0"/> to <see cref="Value2"/>, or its label array with the metric in
    /// <see cref="Value0"/>; null when the slot is free.
    /// </summary>
    private struct Slot
    {
        public object? Key;
        public string? Value0;
        public string? Value1;
        public string? Value2;
        public int Version;
        public int Tag;
        public int Value;
        public int Generation;
    }

    /// <summary>
    /// The metric and label-name objects that series of a metric share, in the callers' order: one object for
    /// all of them, which their hits read (so it stays in the cache) instead of each series' label array.
    /// </summary>
    private sealed class Shape(string metric, string? name0, string? name1, string? name2, int count)
    {
        public readonly string Metric = metric;
        public readonly string? Name0 = name0;
        public readonly string? Name1 = name1;
        public readonly string? Name2 = name2;
        public readonly int Count = count;
    }

    /// <summary>A shape's objects, compared and hashed by identity (the GC keeps an object's identity hash when it moves it).</summary>
    private readonly record struct ShapeKey(string Metric, string? Name0, string? Name1, string? Name2, int Count)
    {
        public bool Equals(ShapeKey other) =>
            ReferenceEquals(Metric, other.Metric) && ReferenceEquals(Name0, other.Name0) && ReferenceEquals(Name1, other.Name1)
            && ReferenceEquals(Name2, other.Name2) && Count == other.Count;

        public override int GetHashCode() =>
            HashCode.Combine(RuntimeHelpers.GetHashCode(Metric), RuntimeHelpers.GetHashCode(Name0), RuntimeHelpers.GetHashCode(Name1), RuntimeHelpers.GetHashCode(Name2), Count);
    }
}

using System.Runtime.CompilerServices;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// A label set resolved to a series id, re-resolved when the registry has reclaimed idle series since:
/// a handle bound long ago must not keep writing through an id whose series was reclaimed (once the
/// engine retires that id, its shard refuses every point as stale).
/// </summary>
/// <remarks>
/// PERF: the common path is one read of the registry's reclaim counter. Any reclaim anywhere makes every
/// binding look its series up again once (a hash lookup), which finds the same id while its series lives.
/// A point written through the old id while the binding had not yet noticed is still aggregated: the
/// engine retires an unlisted id only once every writer has flushed past the unlisting.
/// <para>PERF: a struct held inline by its handle (a field that is never copied: not readonly), so a call
/// reads the handle and the resolved id, not a binding object in between: at 100,000 handles each of those
/// is a cache miss.</para>
/// </remarks>
internal struct SeriesBinding
{
    private readonly SeriesRegistry _registry;
    private readonly SharedPointWriter _writer;
    private readonly string _metric;
    private readonly Label[] _labels;
    private volatile Resolved _current;

    public SeriesBinding(SeriesRegistry registry, SharedPointWriter writer, string metric, Label[] labels)
    {
        _registry = registry;
        _writer = writer;
        _metric = metric;
        _labels = labels;
        long seen = registry.Reclaimed;
        _current = new Resolved(registry.GetOrAdd(metric, labels), seen);
    }

    private sealed record Resolved(SeriesId Id, long ReclaimedSeen);

    public SeriesId Current
    {
        get
        {
            Resolved current = _current;
            long reclaimed = _registry.Reclaimed;
            return reclaimed == current.ReclaimedSeen ? current.Id : Rebind(reclaimed);
        }
    }

    /// <summary>Writes one value of the bound series, stamped with the engine clock.</summary>
    public RejectReason Write(double value) => _writer.Write(Current, value);

    /// <summary>Writes one value of the bound series at an explicit event time (ms since the Unix epoch).</summary>
    public RejectReason Write(double value, long timestampUnixMs) => _writer.Write(Current, value, timestampUnixMs);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private SeriesId Rebind(long reclaimed)
    {
        // A failed lookup (a limit reached meanwhile) keeps the old id: the engine then counts the refusal.
        SeriesId id = _registry.TryGetOrAdd(_metric, _labels, out SeriesId fresh) == RejectReason.None ? fresh : _current.Id;
        _current = new Resolved(id, reclaimed);
        return id;
    }
}

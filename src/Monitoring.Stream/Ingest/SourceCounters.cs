using System.Runtime.InteropServices;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// What one source (a <see cref="PointWriter"/>) offered and what became of it. Written only by the
/// source's own thread, read by anyone: plain 64-bit fields, which x64 reads without tearing.
/// </summary>
internal sealed class SourceCounters
{
    public readonly long[] Rejected = new long[Enum.GetValues<RejectReason>().Length];
    public readonly long[] Dropped = new long[Enum.GetValues<DropReason>().Length];

    // PERF: the per-point counter sits alone on its cache line, so readers polling the totals never
    // pull the line away from the writing thread's neighbours.
    private Padded _offered;

    public SourceCounters(string name) => Name = name;

    public string Name { get; }

    public long Accepted;

    public ref long Offered => ref _offered.Value;

    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct Padded
    {
        [FieldOffset(64)]
        public long Value;
    }
}

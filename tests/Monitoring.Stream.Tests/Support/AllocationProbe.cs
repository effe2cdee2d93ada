namespace Monitoring.Stream.Tests.Support;

/// <summary>Measures what a loop allocates on the calling thread, after a warm-up run.</summary>
internal static class AllocationProbe
{
    /// <summary>
    /// Runs <paramref name="loop"/> once to warm up, then again measured; returns the bytes the
    /// measured run allocated on this thread.
    /// </summary>
    /// <remarks>
    /// Tests assert fewer bytes than calls rather than exactly zero: the runtime may allocate a few
    /// bytes once on the thread (tiered compilation swapping a method's code mid-loop), while any
    /// allocation per call costs at least 24 bytes a call and cannot hide below that bound.
    /// </remarks>
    public static long MeasuredBytes(Action loop)
    {
        loop();
        long before = GC.GetAllocatedBytesForCurrentThread();
        loop();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}

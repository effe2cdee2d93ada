using System.Runtime.CompilerServices;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// The calling thread's managed id for the writers' gates, from a thread static of its own:
/// <see cref="Environment.CurrentManagedThreadId"/> is a call into the runtime the JIT cannot inline (and
/// around which it spills every live register of the write), a thread-static read can be inlined.
/// </summary>
internal static class WriterThread
{
    // Thread statics take the t_ prefix (dotnet/runtime style), which .editorconfig cannot tell apart from s_.
#pragma warning disable IDE1006
    [ThreadStatic]
    private static int t_id;
#pragma warning restore IDE1006

    /// <summary>This thread's managed id (never 0).</summary>
    public static int Id
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            int id = t_id;
            return id != 0 ? id : Read();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Read() => t_id = Environment.CurrentManagedThreadId;
}

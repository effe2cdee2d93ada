namespace Monitoring.Stream.Tests.Support;

/// <summary>Runs a script of tests/interop under Node.js and returns its standard output.</summary>
internal static class NodeRunner
{
    public static Task<string> RunAsync(string script, params string[] args)
    {
        string modules = Path.Combine(RepositoryPaths.Interop, "node_modules");
        if (!Directory.Exists(modules))
        {
            throw new InvalidOperationException($"{modules} is missing: run ./build.sh test, which installs the interop readers with npm ci.");
        }

        return InteropProcess.RunAsync("node", script, TimeSpan.FromSeconds(120), string.Empty, args);
    }
}

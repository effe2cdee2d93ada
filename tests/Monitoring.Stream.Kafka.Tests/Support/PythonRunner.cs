using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Kafka.Tests.Support;

/// <summary>Runs a script of tests/interop under Debian's Python 3 (with python3-msgpack and python3-confluent-kafka) and returns its standard output.</summary>
internal static class PythonRunner
{
    // Debian's interpreter, where apt installs the modules; a python3 earlier on PATH (pyenv, venv) may lack them.
    private static string Interpreter => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    public static Task<string> RunAsync(string script, TimeSpan timeout, params string[] args) =>
        InteropProcess.RunAsync(Interpreter, script, timeout, " (python3-msgpack and python3-confluent-kafka are installed by ./build.sh test)", args);
}

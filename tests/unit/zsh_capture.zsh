# What zsh's completion offers for a command line: an interactive zsh in a pseudo-terminal
# loads the completion functions from FPATH_DIR, gets the line and a Tab, and prints every
# match the completion adds (compadd wrapped), one a line. After Valodim's
# zsh-capture-completion. Usage: zsh zsh_capture.zsh FPATH_DIR 'multihome pl'
zmodload zsh/zpty
zpty z zsh -f -i
local line
zpty -w z "fpath=($1 \$fpath)"
zpty -w z 'PROMPT=; autoload -U compinit; compinit -u -D'
zpty -w z 'null-line () { echo -E - $'"'"'\0'"'"' }'
zpty -w z 'compprefuncs=( null-line ); comppostfuncs=( null-line exit )'
zpty -w z "zstyle ':completion:*' list-grouped false; zstyle ':completion:*' insert-tab false"
zpty -w z 'compadd () { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi; typeset -a __hits; builtin compadd -A __hits "$@"; local h; for h in $__hits; do echo -E - "MATCH:$h"; done; }'
zpty -w z 'bindkey "^I" complete-word'
zpty -w z "$2"$'\t'
integer tog=0
while zpty -r z line; do
    if [[ $line == MATCH:* ]]; then print -r -- ${${line#MATCH:}%$'\r'}; fi
    [[ $line == *$'\0'* ]] && (( tog++ ))
    (( tog >= 2 )) && break
done
zpty -d z
